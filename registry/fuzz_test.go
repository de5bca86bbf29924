package registry

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftkv/raftkv/fsm"
)

// FuzzApply commits arbitrary bytes to the meta group. Applying them must
// not panic, except for the documented halt on an entry from a newer
// raftkv; a refused entry must leave the registry as it was; and whatever
// is accepted must survive a checkpoint. Seeds include every shard command,
// which is what a misrouted proposal puts in this log.
func FuzzApply(f *testing.F) {
	f.Add(EncodeInit("c1", 3))
	f.Add(EncodeInit("c2", 0))
	f.Add(EncodeUpsertNode(Node{ID: "n3", HTTPAddr: "127.0.0.1:8003", RaftAddr: "127.0.0.1:9003"}))
	f.Add(EncodeRemoveNode("n1"))
	f.Add(EncodeNoop())
	f.Add(fsm.EncodePut("k", []byte("v"), fsm.Condition{Kind: fsm.CondAbsent}))
	f.Add(fsm.EncodeDelete("k", fsm.Condition{}))
	f.Add(fsm.EncodeNoop())
	cmd := fsm.TxnCmd{ID: "shard-1.x", Primary: "shard-1", Participants: []string{"shard-1", "shard-2"}, Now: 1, Deadline: 2,
		Outcome: fsm.OutcomeSuccess, Body: fsm.Txn{Success: []fsm.Op{{Kind: fsm.OpPut, Key: "a", Value: []byte("1")}}}}
	for _, typ := range []fsm.CommandType{fsm.CommandTxn, fsm.CommandTxnPrepare, fsm.CommandTxnDecide,
		fsm.CommandTxnResolve, fsm.CommandTxnResolved, fsm.CommandTxnGC} {
		f.Add(fsm.EncodeTxn(typ, cmd))
	}
	f.Fuzz(func(t *testing.T, entry []byte) {
		h := settledRegistry(t)
		before := stateBytes(t, h.f)
		h.idx++
		l := &raft.Log{Index: h.idx, Term: 2, Type: raft.LogCommand, Data: entry}
		h.f.mu.Lock()
		r, err := h.f.st.applyEntry(h.f.group, l)
		h.f.mu.Unlock()
		var newer *NewerEntryError
		if errors.As(err, &newer) {
			return // the documented halt; ApplyBatch panics with it
		}
		if err != nil || r == nil {
			t.Fatalf("applyEntry: %v, result %v", err, r)
		}
		if r.Err != nil && !bytes.Equal(stateBytes(t, h.f), before) {
			t.Fatalf("refused entry (%v) changed the registry", r.Err)
		}
		h.f.applied.Set(l.Index)
		snap := persist(t, h.f)
		g := New("meta")
		if err := restore(g, snap); err != nil {
			t.Fatalf("accepted state does not restore: %v", err)
		}
		if !bytes.Equal(persist(t, g), snap) {
			t.Fatal("restored registry persists differently")
		}

		// A second replica gets the entry and its replay in one batch.
		h2 := settledRegistry(t)
		h2.f.ApplyBatch([]*raft.Log{l, {Index: l.Index + 1, Term: 2, Type: raft.LogCommand, Data: entry}})
		h.f.Apply(&raft.Log{Index: l.Index + 1, Term: 2, Type: raft.LogCommand, Data: entry})
		if !bytes.Equal(stateBytes(t, h.f), stateBytes(t, h2.f)) {
			t.Fatal("Apply and ApplyBatch replicas diverged")
		}
	})
}

// FuzzRestore hands arbitrary bytes to Restore as a checkpoint: no panic,
// a refused checkpoint leaves the registry untouched, an accepted one
// persists back to itself.
func FuzzRestore(f *testing.F) {
	f.Add(persist(f, settledRegistry(f).f))
	f.Add(persist(f, New("meta")))
	f.Fuzz(func(t *testing.T, checkpoint []byte) {
		h := settledRegistry(t)
		before := persist(t, h.f)
		if err := restore(h.f, checkpoint); err != nil {
			if !bytes.Equal(persist(t, h.f), before) {
				t.Fatalf("refused checkpoint (%v) changed the registry", err)
			}
			return
		}
		again := persist(t, h.f)
		g := New("meta")
		if err := restore(g, again); err != nil {
			t.Fatalf("a restored registry does not checkpoint: %v", err)
		}
		if !bytes.Equal(persist(t, g), again) {
			t.Fatal("restored registry persists differently")
		}
	})
}
