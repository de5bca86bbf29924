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
