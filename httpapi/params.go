package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
)

// keyRequest holds the options every key request may carry.
type keyRequest struct {
	ctx         context.Context
	cancel      context.CancelFunc
	cond        fsm.Condition       // writes: If-Match / If-None-Match
	consistency cluster.Consistency // reads: ?consistency=
}

// parseKeyRequest reads a key request's conditions (writes) or consistency
// (reads) and its deadline. On success the caller must call cancel.
func parseKeyRequest(r *http.Request, write bool) (keyRequest, error) {
	var kr keyRequest
	var err error
	if write {
		kr.cond, err = condition(r)
	} else {
		kr.consistency, err = consistency(r)
	}
	if err != nil {
		return kr, err
	}
	kr.ctx, kr.cancel, err = withDeadline(r, DefaultTimeout)
	return kr, err
}

// decodeWithDeadline decodes a cluster operation's JSON body and applies its
// deadline. On success the caller must call cancel.
func decodeWithDeadline(w http.ResponseWriter, r *http.Request, v any, def time.Duration) (context.Context, context.CancelFunc, error) {
	if err := decodeJSON(w, r, v); err != nil {
		return nil, nil, err
	}
	return withDeadline(r, def)
}

// withDeadline applies ?timeout= (a Go duration such as 2s or 500ms) or def.
func withDeadline(r *http.Request, def time.Duration) (context.Context, context.CancelFunc, error) {
	d := def
	if v := r.URL.Query().Get("timeout"); v != "" {
		parsed, err := time.ParseDuration(v)
		if err != nil || parsed <= 0 || parsed > MaxTimeout {
			return nil, nil, fmt.Errorf("%w: timeout %q must be a duration between 1ms and %s, like 2s", cluster.ErrBadRequest, v, MaxTimeout)
		}
		d = parsed
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return ctx, cancel, nil
}

// consistency reads ?consistency=linearizable|stale (default linearizable).
func consistency(r *http.Request) (cluster.Consistency, error) {
	switch v := r.URL.Query().Get("consistency"); v {
	case "", "linearizable":
		return cluster.Linearizable, nil
	case "stale":
		return cluster.Stale, nil
	default:
		return 0, fmt.Errorf("%w: consistency %q: use linearizable or stale", cluster.ErrBadRequest, v)
	}
}

// condition reads If-Match: "R" and If-None-Match: *.
func condition(r *http.Request) (fsm.Condition, error) {
	ifMatch, ifNone := r.Header.Get("If-Match"), r.Header.Get("If-None-Match")
	switch {
	case ifMatch != "" && ifNone != "":
		return fsm.Condition{}, fmt.Errorf("%w: use either If-Match or If-None-Match, not both", cluster.ErrBadRequest)
	case ifNone != "":
		if strings.TrimSpace(ifNone) != "*" {
			return fsm.Condition{}, fmt.Errorf("%w: If-None-Match supports only *", cluster.ErrBadRequest)
		}
		return fsm.Condition{Kind: fsm.CondAbsent}, nil
	case ifMatch != "":
		v := strings.TrimPrefix(strings.TrimSpace(ifMatch), "W/")
		v = strings.Trim(v, `"`)
		rev, err := strconv.ParseUint(v, 10, 64)
		if err != nil || rev == 0 {
			return fsm.Condition{}, fmt.Errorf("%w: If-Match must be a revision such as \"42\", got %q", cluster.ErrBadRequest, ifMatch)
		}
		return fsm.Condition{Kind: fsm.CondRevision, Revision: rev}, nil
	}
	return fsm.Condition{}, nil
}

// readValue reads a request body of at most limit bytes.
func readValue(w http.ResponseWriter, r *http.Request, limit int) ([]byte, error) {
	if r.ContentLength > int64(limit) {
		return nil, fmt.Errorf("%w: value is %d bytes, the limit is %d", cluster.ErrTooLarge, r.ContentLength, limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, fmt.Errorf("%w: value is over the limit of %d bytes", cluster.ErrTooLarge, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %v", cluster.ErrBadRequest, err)
	}
	return body, nil
}

// decodeJSON decodes a small JSON body strictly: unknown fields and trailing
// data are errors, so a typo never silently does something else.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: invalid JSON body: %v", cluster.ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: invalid JSON body: more than one value", cluster.ErrBadRequest)
	}
	return nil
}
