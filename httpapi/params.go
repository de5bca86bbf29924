package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/httpbody"
)

// keyRequest holds the options every key request may carry.
type keyRequest struct {
	ctx         context.Context
	cancel      context.CancelFunc
	cond        fsm.Condition       // writes: If-Match / If-None-Match
	consistency cluster.Consistency // reads: ?consistency=
	minIndex    uint64              // key reads: ?min_index=, the shard index to wait for
	query       url.Values          // the parsed query, for the parameters a handler reads itself
}

// query returns the request's query parameters. Most requests have none,
// and then it parses nothing: r.URL.Query parses the raw query afresh on
// every call, and a key request asks for several parameters.
func query(r *http.Request) url.Values {
	if r.URL.RawQuery == "" {
		return nil
	}
	return r.URL.Query()
}

// parseKeyRequest checks the key before anything else, then reads the
// request's options (see parseOptions). On success the caller must call
// cancel.
func parseKeyRequest(r *http.Request, key string, write bool) (keyRequest, error) {
	if err := cluster.ValidateKey(key); err != nil {
		return keyRequest{}, err
	}
	q := query(r)
	var min uint64
	if v := q.Get("min_index"); v != "" {
		parsed, err := strconv.ParseUint(v, 10, 64)
		switch {
		case write:
			return keyRequest{}, fmt.Errorf("%w: min_index is for reads", cluster.ErrBadRequest)
		case err != nil || parsed == 0:
			return keyRequest{}, fmt.Errorf("%w: min_index %q: want a raft index, such as a write's X-Raftkv-Index", cluster.ErrBadRequest, v)
		}
		min = parsed
	}
	kr, err := parseOptionsIn(r, q, write)
	kr.minIndex = min
	return kr, err
}

// checked releases a parsed request's deadline at once: for checking a
// request's options before a wait, after which they are parsed again.
func checked(kr keyRequest, err error) error {
	if err == nil {
		kr.cancel()
	}
	return err
}

// parseOptions reads a key or list request's conditions (writes) or
// consistency (reads) and its deadline. On success the caller must call
// cancel.
func parseOptions(r *http.Request, write bool) (keyRequest, error) {
	return parseOptionsIn(r, query(r), write)
}

// parseOptionsIn is parseOptions with the query already parsed: a key
// request parses its query once, not once per parameter it reads.
func parseOptionsIn(r *http.Request, q url.Values, write bool) (keyRequest, error) {
	kr := keyRequest{query: q}
	var err error
	if write {
		kr.cond, err = condition(r)
	} else {
		kr.consistency, err = consistency(q)
	}
	if err != nil {
		return kr, err
	}
	kr.ctx, kr.cancel, err = deadlineIn(r.Context(), q, DefaultTimeout)
	return kr, err
}

// decodeWithDeadline decodes a cluster operation's JSON body (at most
// maxJSONBody bytes) and applies its deadline. On success the caller must
// call cancel.
func (s *Server) decodeWithDeadline(w http.ResponseWriter, r *http.Request, v any, def time.Duration) (context.Context, context.CancelFunc, error) {
	if err := s.decodeJSON(w, r, v, maxJSONBody, "request body"); err != nil {
		return nil, nil, err
	}
	return withDeadline(r, def)
}

// withDeadline applies ?timeout= (a Go duration such as 2s or 500ms) or def.
func withDeadline(r *http.Request, def time.Duration) (context.Context, context.CancelFunc, error) {
	return deadlineIn(r.Context(), query(r), def)
}

// deadlineIn is withDeadline for a parsed query q, under parent.
func deadlineIn(parent context.Context, q url.Values, def time.Duration) (context.Context, context.CancelFunc, error) {
	d := def
	if v := q.Get("timeout"); v != "" {
		parsed, err := time.ParseDuration(v)
		if err != nil || parsed <= 0 || parsed > MaxTimeout {
			return nil, nil, fmt.Errorf("%w: timeout %q must be a duration between 1ms and %s, like 2s", cluster.ErrBadRequest, v, MaxTimeout)
		}
		d = parsed
	}
	ctx, cancel := context.WithTimeout(parent, d)
	return ctx, cancel, nil
}

// consistency reads ?consistency=linearizable|stale (default linearizable).
func consistency(q url.Values) (cluster.Consistency, error) {
	switch v := q.Get("consistency"); v {
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

// readValue reads a PUT body, the value itself: at most limit bytes.
func (s *Server) readValue(w http.ResponseWriter, r *http.Request, limit int) ([]byte, error) {
	body, err := s.limitBody(w, r, int64(limit), "value")
	if err != nil {
		return nil, err
	}
	value, err := httpbody.Read(body, r.ContentLength, int64(limit))
	if tl := s.bodyTooLarge(err, "value"); tl != nil {
		return nil, tl
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %v", cluster.ErrBadRequest, err)
	}
	return value, nil
}

// decodeJSON decodes a JSON body of at most limit bytes strictly: unknown
// fields and trailing data are errors, so a typo never silently does
// something else.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any, limit int64, what string) error {
	body, err := s.limitBody(w, r, limit, what)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if tl := s.bodyTooLarge(err, what); tl != nil {
			return tl
		}
		return fmt.Errorf("%w: invalid JSON body: %v", cluster.ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: invalid JSON body: more than one value", cluster.ErrBadRequest)
	}
	return nil
}
