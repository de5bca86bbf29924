package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/internal/errcode"
)

// Errors raised by the HTTP layer itself, before the Service is called.
var (
	errNoRoute  = errors.New("no such endpoint")
	errNoMethod = errors.New("method not allowed")
)

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorStatus maps err to the error code clients see and the HTTP status,
// both from the vocabulary in internal/errcode: the HTTP layer's own errors
// have their codes here, everything else gets cluster.Code. errors.Is walks
// wrapped errors, so context added with %w still matches.
func errorStatus(err error) (code string, status int) {
	return errcode.HTTP(wireCode(err))
}

// wireCode is the errcode code of err.
func wireCode(err error) string {
	switch {
	case errors.Is(err, errNoRoute):
		return errcode.NotFound
	case errors.Is(err, errNoMethod):
		return errcode.MethodNotAllowed
	}
	return cluster.Code(err)
}

// writeError sends {"error":{"code","message"}} with the mapped status, and
// Retry-After when the code promises the operation did not happen.
func writeError(w http.ResponseWriter, err error) {
	code, status := errorStatus(err)
	if e, _ := errcode.Lookup(code); e.RetryAfter {
		w.Header().Set("Retry-After", strconv.Itoa(int(cluster.RetryAfter.Seconds())))
	}
	var pe *cluster.PreconditionError
	if errors.As(err, &pe) && pe.Found {
		w.Header().Set("ETag", etag(pe.Current.ModRevision))
	}
	writeJSON(w, status, errorBody{errorDetail{Code: code, Message: err.Error()}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func etag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }
