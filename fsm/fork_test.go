package fsm

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// A fork starts with the replica's state and index; entries applied to the
// fork and to the replica afterwards (concurrently, as a backup rolls a
// fork forward while the replica keeps applying) never show in the other,
// and a fork rolled through the same entries persists the same bytes.
func TestForkIsIndependentOfTheReplica(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 200; i++ {
		h.put(fmt.Sprintf("k%03d", i), "base")
	}
	fork := h.f.Fork()
	if fork.AppliedIndex() != h.idx || fork.Len() != 200 {
		t.Fatalf("fork at %d with %d keys, want %d and 200", fork.AppliedIndex(), fork.Len(), h.idx)
	}
	var tail []*raft.Log
	for i := 0; i < 200; i++ {
		tail = append(tail, &raft.Log{Index: h.idx + uint64(i) + 1, Term: 1, Type: raft.LogCommand,
			Data: EncodePut(fmt.Sprintf("k%03d", i), []byte("tail"), Condition{})})
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			h.put(fmt.Sprintf("k%03d", i), "live")
		}
	}()
	fork.ApplyBatch(tail[:100])
	wg.Wait()
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("k%03d", i)
		want := "tail"
		if i >= 100 {
			want = "base"
		}
		if kv, _ := fork.Get(key); string(kv.Value) != want {
			t.Fatalf("fork %s = %q, want %q", key, kv.Value, want)
		}
		if kv, _ := h.f.Get(key); string(kv.Value) != "live" {
			t.Fatalf("replica %s = %q, want live", key, kv.Value)
		}
	}
	if fork.AppliedIndex() != tail[99].Index {
		t.Fatalf("fork at %d, want %d", fork.AppliedIndex(), tail[99].Index)
	}

	// The same entries applied to the replica's state at the fork's index
	// give the same checkpoint.
	again := newHarness(t)
	for i := 0; i < 200; i++ {
		again.put(fmt.Sprintf("k%03d", i), "base")
	}
	again.f.ApplyBatch(tail[:100])
	if !bytes.Equal(persist(t, again.f), persist(t, fork)) {
		t.Fatal("the fork's checkpoint differs from the replica's at the same index")
	}
}

// Finished and Unfinished tell a backup what a state leaves open.
func TestForkReportsOpenAndFinishedTransactions(t *testing.T) {
	h := newHarness(t)
	prepare := func(id string) {
		r := h.apply(EncodeTxn(CommandTxnPrepare, TxnCmd{ID: id, Primary: "shard-1", Participants: []string{"shard-1", "shard-2"},
			Now: 1, Deadline: 10, Body: Txn{Success: []Op{{Kind: OpPut, Key: id + "/k", Value: []byte("v")}}}}))
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	prepare("shard-1.aa")
	prepare("shard-1.bb")
	if r := h.apply(EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.aa", Outcome: OutcomeSuccess, Participants: []string{"shard-1", "shard-2"}, Now: 2})); r.Err != nil {
		t.Fatal(r.Err)
	}
	f := h.f.Fork()
	staged, pending := f.Unfinished()
	if fmt.Sprint(staged, pending) != "[shard-1.bb] [shard-1.bb]" || !f.Finished("shard-1.aa") || f.Finished("shard-1.bb") {
		t.Fatalf("staged %v pending %v, finished aa=%v bb=%v", staged, pending, f.Finished("shard-1.aa"), f.Finished("shard-1.bb"))
	}
}
