package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/internal/errcode"
	"github.com/raftkv/raftkv/registry"
)

// TestEveryErrorReachesTheClientAsItsSentinel follows each error a node can
// return from where it is raised to where a program using package client
// matches it: the cluster sentinel, its code, the HTTP answer written here,
// and the sentinel the client turns that answer into.
func TestEveryErrorReachesTheClientAsItsSentinel(t *testing.T) {
	cases := []struct {
		err  error
		want error // the client sentinel
	}{
		{cluster.ErrBadRequest, client.ErrBadRequest},
		{cluster.ErrUnauthenticated, client.ErrUnauthenticated},
		{cluster.ErrPermissionDenied, client.ErrPermissionDenied},
		{registry.ErrInvalid, client.ErrBadRequest},
		{registry.ErrNotFound, client.ErrNotFound},
		{cluster.ErrNotFound, client.ErrNotFound},
		{registry.ErrUnknownNode, client.ErrNotFound},
		{errNoRoute, client.ErrNotFound},
		{errNoMethod, client.ErrBadRequest},
		{cluster.ErrConflict, client.ErrConflict},
		{cluster.ErrRemoved, client.ErrRemoved},
		{cluster.ErrPrecondition, client.ErrPrecondition},
		{&cluster.PreconditionError{Found: true}, client.ErrPrecondition},
		{cluster.ErrIdempotencyKeyReused, client.ErrIdempotencyKeyReused},
		{cluster.ErrTooLarge, client.ErrTooLarge},
		{cluster.ErrOverloaded, client.ErrOverloaded},
		{cluster.ErrUnavailable, client.ErrUnavailable},
		{cluster.ErrTimeout, client.ErrTimeout},
		{cluster.ErrIndeterminate, client.ErrTimeout},
		{errors.New("disk on fire"), client.ErrInternal},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		err := fmt.Errorf("context: %w", tc.err)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeError(w, err) }))
		c := client.New([]string{srv.URL}, client.WithTimeout(2*time.Second))
		_, got := c.Get(context.Background(), "k")
		srv.Close()

		code, status := errorStatus(err)
		seen[code] = true
		var apiErr *client.APIError
		if !errors.As(got, &apiErr) || apiErr.Status != status || apiErr.Code != code {
			t.Errorf("%v: the client got %v, want an answer %d %s", tc.err, got, status, code)
			continue
		}
		if !errors.Is(got, tc.want) {
			t.Errorf("%v: answered %d %s, which the client does not match as %v", tc.err, status, code, tc.want)
		}
		if e, _ := errcode.Lookup(code); e.RetryAfter != (apiErr.RetryAfter > 0) {
			t.Errorf("%v: Retry-After %v, the code says %v", tc.err, apiErr.RetryAfter, e.RetryAfter)
		}
	}
	// Vice versa: every public code is one of the answers above.
	for _, e := range errcode.List() {
		if !e.Internal && !seen[e.Code] {
			t.Errorf("no error above is answered with %s; add the error that is", e.Code)
		}
	}
}
