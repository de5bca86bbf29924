package cluster

import (
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/raftkv/raftkv/fsm"
)

// Unit tests of keyed cross-shard transactions in the coordinator, over the
// fake shards of txn_coord_test.go: whichever coordinators run a request
// under one idempotency key, and however often, it commits once.

func testOnce(body string) *onceArgs {
	h := sha256.Sum256([]byte(body))
	return &onceArgs{Key: "\x00K", Hash: h[:]}
}

// balances reads a (primary) and b as the fake shards hold them.
func (h *harness) balances(t *testing.T) (string, string) {
	t.Helper()
	return h.value("shard-1", "a"), h.value("shard-2", "b")
}

// TestAKeyedTxnWhoseDecideAnswerWasLostIsNotRunAgain: the first run's
// decide commits but its answer is lost (504 to the client). The retry,
// with the same key, is answered from the primary with the first reply:
// no new attempt, the transfer applied once.
func TestAKeyedTxnWhoseDecideAnswerWasLostIsNotRunAgain(t *testing.T) {
	h := newHarness(t)
	h.once = testOnce("transfer")
	h.shards.inject(opTxnDecideOnce, "shard-1", loseAnswer)
	if _, err := h.run(t); !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("first run: %v, want indeterminate", err)
	}
	h.shards.inject(opTxnDecideOnce, "shard-1", noFault)
	res, err := h.run(t)
	if err != nil || !res.Replayed || !res.Succeeded || res.ID != h.attempt(t, 0) {
		t.Fatalf("retry: %+v %v, want attempt 1's success replayed", res, err)
	}
	if len(h.ids) != 1 {
		t.Fatalf("the retry started attempts %v; it should have found the first one's outcome", h.ids[1:])
	}
	if len(res.Results) != 3 || string(res.Results[2].KV.Value) != "0" || string(res.Results[0].KV.Value) != "70" {
		t.Fatalf("replayed results %+v, want the first answer's (put a=70, put b=30, get b=0)", res.Results)
	}
	// The lost answer left shard-2's part to recovery, as without a key.
	rec, _ := h.shards.fsms["shard-1"].Record(res.ID)
	if _, err := h.c.recoverRecord(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if a, b := h.balances(t); a != "70" || b != "30" {
		t.Fatalf("balances a=%s b=%s, want 70/30: the transfer applied once", a, b)
	}
}

// TestTwoCoordinatorsOfOneKeyedTxnCommitItOnce: coordinator B (the
// client's retry on another node) finds no outcome on the primary and
// starts; before B's prepares, coordinator A (the original) commits the
// request. B's attempt then prepares against the new state (its compare
// fails), and its keyed decide is aborted instead of committing the
// failure branch: B answers A's reply, and the transfer applied once.
func TestTwoCoordinatorsOfOneKeyedTxnCommitItOnce(t *testing.T) {
	h := newHarness(t)
	h.once = testOnce("transfer")
	var first TxnResponse
	ran := false
	h.hook = func(step TxnStep, id, shard string) error {
		if step != StepPrepare || ran {
			return nil
		}
		ran = true // B is about to prepare: A runs now, start to end
		var err error
		if first, err = h.run(t); err != nil || first.Replayed {
			t.Errorf("coordinator A: %+v %v", first, err)
		}
		return nil
	}
	res, err := h.run(t)
	if err != nil {
		t.Fatalf("coordinator B: %v", err)
	}
	if !res.Replayed || res.ID != first.ID || !res.Succeeded {
		t.Fatalf("coordinator B answered %+v, want A's reply %+v replayed", res, first)
	}
	if a, b := h.balances(t); a != "70" || b != "30" {
		t.Fatalf("balances a=%s b=%s, want 70/30", a, b)
	}
	// B's attempt prepared first (its prepare ran the hook), A's second.
	if a := h.attempt(t, 1); a != first.ID {
		t.Fatalf("attempts %v, want B's then A's (%s)", h.ids, first.ID)
	}
	rec, ok := h.shards.fsms["shard-1"].Record(h.attempt(t, 0))
	if !ok || rec.State != fsm.StateAborted || !rec.Resolved {
		t.Fatalf("B's attempt: %+v (found %v), want aborted and resolved", rec, ok)
	}
	for shard, f := range h.shards.fsms {
		if s := f.Transactions(); len(s.Staged) > 0 || s.LockCount > 0 {
			t.Fatalf("%s still holds %d staged parts and %d locks", shard, len(s.Staged), s.LockCount)
		}
	}
}

// TestAKeyReusedForAnotherTxnIsRefused: the same key with another request
// is refused before anything is prepared.
func TestAKeyReusedForAnotherTxnIsRefused(t *testing.T) {
	h := newHarness(t)
	h.once = testOnce("transfer")
	if _, err := h.run(t); err != nil {
		t.Fatal(err)
	}
	h.once = testOnce("another request")
	if _, err := h.run(t); !errors.Is(err, ErrIdempotencyKeyReused) {
		t.Fatalf("reused key: %v, want ErrIdempotencyKeyReused", err)
	}
	if len(h.ids) != 1 {
		t.Fatalf("attempts %v: the refused request must prepare nothing", h.ids)
	}
}
