package cluster

import (
	"errors"
	"fmt"
	"testing"

	"github.com/raftkv/raftkv/internal/errcode"
	"github.com/raftkv/raftkv/registry"
)

// TestWireCodesNeverChange pins each error's code: the strings travel
// between nodes of different versions and are documented in docs/api.md.
func TestWireCodesNeverChange(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
	}{
		{ErrBadRequest, "bad_request"},
		{ErrNotFound, "not_found"},
		{registry.ErrUnknownNode, "not_found"},
		{ErrConflict, "conflict"},
		{ErrPrecondition, "precondition_failed"},
		{&PreconditionError{Found: true}, "precondition_failed"},
		{ErrTooLarge, "too_large"},
		{ErrUnavailable, "unavailable"},
		{ErrOverloaded, "overloaded"},
		{ErrTimeout, "timeout"},
		{ErrIndeterminate, "outcome_unknown"},
		{errNotLeader, "not_leader"},
		{errors.New("disk on fire"), "internal"},
	} {
		if got := Code(fmt.Errorf("wrapped: %w", tc.err)); got != tc.code {
			t.Errorf("Code(%v) = %q, want %q", tc.err, got, tc.code)
		}
	}
}

// TestEveryCodeIsInTheVocabulary checks errorCodes against internal/errcode
// both ways: every code cluster sends has an entry there (and so an HTTP
// status), and every entry is one cluster sends, but for the HTTP layer's
// own codes.
func TestEveryCodeIsInTheVocabulary(t *testing.T) {
	sent := map[string]bool{Code(errors.New("none of ours")): true}
	for _, e := range errorCodes {
		sent[e.code] = true
		if _, ok := errcode.Lookup(e.code); !ok {
			t.Errorf("%v has code %q, which internal/errcode does not list", e.err, e.code)
		}
	}
	httpOnly := map[string]bool{errcode.MethodNotAllowed: true}
	for _, e := range errcode.List() {
		if !sent[e.Code] && !httpOnly[e.Code] {
			t.Errorf("internal/errcode lists %q, but no cluster error has it", e.Code)
		}
	}
}

// TestErrorsSurviveForwarding is what a forwarded request relies on: an
// error raised on the leader and sent as its code arrives as the same
// sentinel, with the leader's message as it was, said once.
func TestErrorsSurviveForwarding(t *testing.T) {
	for _, e := range errorCodes {
		raised := fmt.Errorf("on the leader: %w", e.err)
		got := errorFromCode(Code(raised), raised.Error())
		if Code(got) != e.code {
			t.Errorf("%v arrives with code %q, want %q", e.err, Code(got), e.code)
		}
		// The registry's own sentinels arrive as the cluster sentinel of
		// the same code.
		fromRegistry := e.err == registry.ErrUnknownNode || e.err == registry.ErrNotFound || e.err == registry.ErrInvalid
		if !fromRegistry && !errors.Is(got, e.err) {
			t.Errorf("%v arrives as %v, which is not the same sentinel", e.err, got)
		}
		if got.Error() != raised.Error() {
			t.Errorf("%v arrives as %q, want the leader's %q", e.err, got, raised.Error())
		}
	}
	if got := errorFromCode("from_a_newer_version", "boom"); got.Error() != "boom" || Code(got) != errcode.Internal {
		t.Errorf("an unknown code arrives as %v (code %q), want a plain internal error", got, Code(got))
	}
}
