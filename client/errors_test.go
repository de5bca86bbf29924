package client

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/internal/errcode"
)

// TestEveryCodeHasASentinel checks codeSentinels against internal/errcode
// both ways: every code a client can see has a sentinel, and every code
// with a sentinel is one a server sends.
func TestEveryCodeHasASentinel(t *testing.T) {
	public := map[string]bool{}
	for _, e := range errcode.List() {
		if e.Internal {
			continue
		}
		public[e.Code] = true
		if codeSentinels[e.Code] == nil {
			t.Errorf("code %s (%d) has no sentinel", e.Code, e.Status)
		}
		withBody := &APIError{Status: e.Status, Code: e.Code}
		bare := &APIError{Status: e.Status, Code: codeForStatus(e.Status)}
		if s := codeSentinels[e.Code]; !errors.Is(withBody, s) || !errors.Is(bare, s) {
			t.Errorf("a %d %s answer does not match %v, with the body or without", e.Status, e.Code, s)
		}
	}
	for code := range codeSentinels {
		if !public[code] {
			t.Errorf("codeSentinels has %s, which no server sends", code)
		}
	}
}

func TestUnknownCodeFallsBackToTheStatus(t *testing.T) {
	err := &APIError{Status: 429, Code: "from_a_newer_version"}
	if !errors.Is(err, ErrOverloaded) {
		t.Fatalf("%v does not match ErrOverloaded", err)
	}
}
