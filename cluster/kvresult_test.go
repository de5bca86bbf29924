package cluster

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/fsm"
)

// Only a failed condition is a precondition failure; other refusals of the
// state machine keep their own meaning.
func TestOnlyAFailedConditionIsAPreconditionFailure(t *testing.T) {
	var pe *PreconditionError
	if _, err := kvResult(&fsm.Result{Err: fsm.ErrPrecondition, Found: true}); !errors.As(err, &pe) || !pe.Found {
		t.Fatalf("failed condition: %v, want a PreconditionError", err)
	}
	if _, err := kvResult(&fsm.Result{Err: fsm.ErrLocked, LockedBy: "tx1"}); !errors.Is(err, ErrConflict) || errors.As(err, &pe) {
		t.Fatalf("locked key: %v, want a conflict", err)
	}
	odd := errors.New("fsm: something else")
	if _, err := kvResult(&fsm.Result{Err: odd}); !errors.Is(err, odd) || errors.As(err, &pe) || errors.Is(err, ErrPrecondition) {
		t.Fatalf("another refusal: %v, want it kept as it is", err)
	}
	if res, err := kvResult(&fsm.Result{Found: true, KV: fsm.KV{Key: "k", ModRevision: 3}}); err != nil || res.KV.ModRevision != 3 {
		t.Fatalf("success: %+v, %v", res, err)
	}
}

// The state machine's refusals keep their meaning through the cluster's
// error vocabulary (and so their HTTP status and wire code).
func TestStateMachineRefusalsKeepTheirMeaning(t *testing.T) {
	cases := []struct {
		err  error
		want error
	}{
		{fsm.ErrLocked, ErrConflict},
		{fsm.ErrTxnFinished, ErrConflict},
		{fsm.ErrNoRecord, ErrNotFound},
		{fsm.ErrInvalid, ErrBadRequest},
		{fsm.ErrPrecondition, ErrPrecondition},
	}
	for _, c := range cases {
		got := fsmError("prepare", c.err)
		if !errors.Is(got, c.want) || !errors.Is(got, c.err) || Code(got) != Code(c.want) {
			t.Errorf("%v maps to %v (code %s), want %v (code %s)", c.err, got, Code(got), c.want, Code(c.want))
		}
	}
	if err := fsmError("prepare", nil); err != nil {
		t.Fatalf("no error maps to %v", err)
	}
}
