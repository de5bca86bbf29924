package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/cluster"
)

// Errors raised by the HTTP layer itself, before the Service is called.
var (
	errNoRoute  = errors.New("no such endpoint")
	errNoMethod = errors.New("method not allowed")
)

// statusOf is the one table from typed errors to HTTP status and error code.
// errors.Is walks wrapped errors, so context added with %w still matches.
var statusOf = []struct {
	err    error
	status int
	code   string
}{
	{errNoRoute, http.StatusNotFound, "not_found"},
	{errNoMethod, http.StatusMethodNotAllowed, "method_not_allowed"},
	{cluster.ErrBadRequest, http.StatusBadRequest, "bad_request"},
	{cluster.ErrNotFound, http.StatusNotFound, "not_found"},
	{cluster.ErrConflict, http.StatusConflict, "conflict"},
	{cluster.ErrPrecondition, http.StatusPreconditionFailed, "precondition_failed"},
	{cluster.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{cluster.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{cluster.ErrOverloaded, http.StatusTooManyRequests, "overloaded"},
	{cluster.ErrTimeout, http.StatusGatewayTimeout, "timeout"},
	{cluster.ErrIndeterminate, http.StatusGatewayTimeout, "timeout"},
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorStatus maps err to its error code and HTTP status.
func errorStatus(err error) (code string, status int) {
	for _, e := range statusOf {
		if errors.Is(err, e.err) {
			return e.code, e.status
		}
	}
	return "internal", http.StatusInternalServerError
}

// writeError sends {"error":{"code","message"}} with the mapped status.
func writeError(w http.ResponseWriter, err error) {
	code, status := errorStatus(err)
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
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
