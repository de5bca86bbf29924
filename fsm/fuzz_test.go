package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftkv/raftkv/registry"
)

// FuzzApply commits arbitrary bytes to a busy shard. Whatever they are,
// applying them must not panic, except for the documented halt on an entry
// from a newer raftkv; an entry refused as malformed or invalid must leave
// the state as it was; and whatever is accepted must survive a checkpoint.
// The same entry is then replayed through ApplyBatch on a second replica,
// which must end in the same state.
func FuzzApply(f *testing.F) {
	body := Txn{
		Compares: []Compare{valueIs("a", "1"), {Key: "b", Target: TargetVersion, Op: OpLess, Number: 3}},
		Success:  []Op{putOp("a", "2"), delOp("c"), get("b")},
		Failure:  []Op{get("a")},
	}
	f.Add(EncodePut("a", []byte("v"), Condition{Kind: CondRevision, Revision: 1}))
	f.Add(EncodePut("b", nil, Condition{Kind: CondAbsent}))
	f.Add(EncodeDelete("a", Condition{}))
	f.Add(EncodeNoop())
	f.Add(EncodeTxn(CommandTxn, TxnCmd{Body: body}))
	f.Add(EncodeTxn(CommandTxnPrepare, prepare("shard-1.n", "shard-1", 10, body)))
	f.Add(EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.p", Outcome: OutcomeSuccess, Now: 20, Participants: []string{"shard-1", "shard-x"}}))
	f.Add(EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.made-up", Outcome: OutcomeAborted, Now: 20, Participants: []string{"shard-1"}}))
	f.Add(EncodeTxn(CommandTxnResolve, TxnCmd{ID: "shard-2.q", Outcome: OutcomeFailure, Now: 20}))
	f.Add(EncodeTxn(CommandTxnResolved, TxnCmd{ID: "shard-1.p"}))
	f.Add(EncodeTxn(CommandTxnGC, TxnCmd{Now: 30, Before: 30}))
	f.Add(EncodeIdempotent("K", make([]byte, IdempotencyHashBytes), 40, EncodePut("a", []byte("w"), Condition{})))
	f.Add(EncodeIdempotent("K", make([]byte, IdempotencyHashBytes), 40, EncodeTxn(CommandTxn, TxnCmd{Body: body})))
	f.Add(EncodeIdempotentDecide("K", make([]byte, IdempotencyHashBytes), 40, []byte("reply"),
		EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.p", Outcome: OutcomeSuccess, Now: 20, Participants: []string{"shard-1", "shard-x"}})))
	f.Add(EncodeIdempotencyGC(50, 45))
	f.Add(EncodeLeaseGrant("shard-1.N", int64(time.Minute)))
	f.Add(EncodeLeaseRevoke("shard-1.L", LeasePrepare, 1))
	f.Add(EncodeLeaseRevoke("shard-2.M", LeaseCommit, 0))
	f.Add(EncodeLeasePut("l2", []byte("v"), Condition{Kind: CondAbsent}, "shard-1.L"))
	f.Add(EncodeLeasePut("m2", []byte("v"), Condition{}, "shard-2.M"))
	f.Add(EncodePut("l1", []byte("detach"), Condition{}))
	f.Add(EncodeIdempotent("K2", make([]byte, IdempotencyHashBytes), 40, EncodeLeasePut("l3", []byte("w"), Condition{}, "shard-1.L")))
	f.Add(registry.EncodeInit("cluster-1", 3))
	f.Add(registry.EncodeUpsertNode(registry.Node{ID: "n1", HTTPAddr: "127.0.0.1:8001", RaftAddr: "127.0.0.1:9001"}))
	f.Add(registry.EncodeRemoveNode("n1"))
	f.Add(registry.EncodeNoop())
	f.Fuzz(func(t *testing.T, entry []byte) {
		h := busyShard(t)
		before := stateBytes(t, h.f)
		l := &raft.Log{Index: h.idx + 1, Term: 1, Type: raft.LogCommand, Data: entry}
		r, err := applyEntry(&h.f.st, l)
		var newer *NewerEntryError
		if errors.As(err, &newer) {
			return // the documented halt; ApplyBatch panics with it
		}
		if err != nil || r == nil {
			t.Fatalf("applyEntry: %v, result %v", err, r)
		}
		if errors.Is(r.Err, ErrMalformed) || errors.Is(r.Err, ErrInvalid) {
			if !bytes.Equal(stateBytes(t, h.f), before) {
				t.Fatalf("refused entry (%v) changed the state", r.Err)
			}
		}
		h.f.applied.Set(l.Index)
		snap := persist(t, h.f)
		g := New("shard-1")
		if err := restore(g, snap); err != nil {
			t.Fatalf("accepted state does not restore: %v", err)
		}
		if !bytes.Equal(persist(t, g), snap) {
			t.Fatal("restored state persists differently")
		}

		// A second replica gets the entry in a batch, followed by its replay.
		h2 := busyShard(t)
		replay := &raft.Log{Index: l.Index + 1, Term: 1, Type: raft.LogCommand, Data: entry}
		out := h2.f.ApplyBatch([]*raft.Log{l, replay})
		if len(out) != 2 {
			t.Fatalf("ApplyBatch returned %d results for 2 entries", len(out))
		}
		if _, err := applyEntry(&h.f.st, replay); err != nil {
			t.Fatalf("replay: %v", err)
		}
		if !bytes.Equal(stateBytes(t, h.f), stateBytes(t, h2.f)) {
			t.Fatal("Apply and ApplyBatch replicas diverged")
		}
	})
}

// FuzzRestore hands arbitrary bytes to Restore as a checkpoint. It must
// not panic; a checkpoint it refuses leaves the live state untouched, and
// one it accepts persists back to the same state.
func FuzzRestore(f *testing.F) {
	f.Add(persist(f, busyShard(f).f))
	f.Add(persist(f, newHarness(f).f))
	f.Add([]byte("RKVSNAP\x00"))
	f.Fuzz(func(t *testing.T, checkpoint []byte) {
		h := busyShard(t)
		before := persist(t, h.f)
		if err := restore(h.f, checkpoint); err != nil {
			if !bytes.Equal(persist(t, h.f), before) {
				t.Fatalf("refused checkpoint (%v) changed the state", err)
			}
			return
		}
		again := persist(t, h.f)
		g := New("shard-1")
		if err := restore(g, again); err != nil {
			t.Fatalf("a restored state does not checkpoint: %v", err)
		}
		if !bytes.Equal(persist(t, g), again) {
			t.Fatal("restored state persists differently")
		}
	})
}
