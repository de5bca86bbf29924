package fsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/raftkv/raftkv/snapshot"
)

func (h *harness) txn(typ CommandType, c TxnCmd) *Result {
	h.t.Helper()
	return h.apply(EncodeTxn(typ, c))
}

func get(k string) Op      { return Op{Kind: OpGet, Key: k} }
func putOp(k, v string) Op { return Op{Kind: OpPut, Key: k, Value: []byte(v)} }
func delOp(k string) Op    { return Op{Kind: OpDelete, Key: k} }
func valueIs(k, v string) Compare {
	return Compare{Key: k, Target: TargetValue, Op: OpEqual, Value: []byte(v)}
}

func value(t *testing.T, f *FSM, key string) string {
	t.Helper()
	kv, ok := f.Get(key)
	if !ok {
		return "<absent>"
	}
	return string(kv.Value)
}

func TestSingleShardTxn(t *testing.T) {
	h := newHarness(t)
	h.put("a", "10") // index 1
	h.put("b", "0")  // index 2
	r := h.txn(CommandTxn, TxnCmd{Body: Txn{
		Compares: []Compare{valueIs("a", "10"), {Key: "b", Target: TargetVersion, Op: OpGreater, Number: 0}},
		Success:  []Op{putOp("a", "5"), get("a"), putOp("b", "15"), delOp("c"), get("missing")},
		Failure:  []Op{get("a")},
	}}) // index 3
	if r.Err != nil || r.Txn == nil || !r.Txn.Succeeded {
		t.Fatalf("txn: %+v", r)
	}
	res := r.Txn.Results
	if len(res) != 5 {
		t.Fatalf("want 5 results, got %d", len(res))
	}
	if string(res[0].KV.Value) != "5" || res[0].KV.ModRevision != 3 || res[0].KV.Version != 2 || !res[0].Found {
		t.Errorf("put result %+v", res[0])
	}
	if string(res[1].KV.Value) != "10" || res[1].KV.ModRevision != 1 {
		t.Errorf("get must see the state before the transaction, got %+v", res[1])
	}
	if res[3].Found || res[4].Found {
		t.Errorf("absent keys reported found: %+v %+v", res[3], res[4])
	}
	if value(t, h.f, "a") != "5" || value(t, h.f, "b") != "15" {
		t.Errorf("state a=%s b=%s", value(t, h.f, "a"), value(t, h.f, "b"))
	}

	// A failing compare runs the failure branch and writes nothing else.
	r = h.txn(CommandTxn, TxnCmd{Body: Txn{
		Compares: []Compare{valueIs("a", "10")},
		Success:  []Op{putOp("a", "0")},
		Failure:  []Op{get("a"), putOp("log", "failed")},
	}})
	if r.Txn.Succeeded || string(r.Txn.Results[0].KV.Value) != "5" || value(t, h.f, "a") != "5" || value(t, h.f, "log") != "failed" {
		t.Fatalf("failure branch: %+v a=%s", r.Txn, value(t, h.f, "a"))
	}
}

func TestCompareRules(t *testing.T) {
	h := newHarness(t)
	h.put("k", "m") // index 1, version 1
	h.put("k", "m") // index 2, version 2
	cases := []struct {
		c    Compare
		want bool
	}{
		{Compare{Key: "k", Target: TargetValue, Op: OpEqual, Value: []byte("m")}, true},
		{Compare{Key: "k", Target: TargetValue, Op: OpLess, Value: []byte("n")}, true},
		{Compare{Key: "k", Target: TargetValue, Op: OpGreater, Value: []byte("n")}, false},
		{Compare{Key: "k", Target: TargetValue, Op: OpNotEqual, Value: []byte("m")}, false},
		{Compare{Key: "k", Target: TargetVersion, Op: OpEqual, Number: 2}, true},
		{Compare{Key: "k", Target: TargetRevision, Op: OpEqual, Number: 2}, true},
		{Compare{Key: "k", Target: TargetRevision, Op: OpLess, Number: 2}, false},
		{Compare{Key: "nope", Target: TargetVersion, Op: OpEqual, Number: 0}, true},
		{Compare{Key: "nope", Target: TargetValue, Op: OpNotEqual, Value: []byte("x")}, false},
		{Compare{Key: "nope", Target: TargetRevision, Op: OpLess, Number: 1}, true},
	}
	for i, tc := range cases {
		cur, found := h.f.st.kv.Get(entry{key: tc.c.Key})
		if got := evalCompare(tc.c, cur, found); got != tc.want {
			t.Errorf("case %d %+v: got %v", i, tc.c, got)
		}
	}
}

// prepare returns the prepare command of a part on shard-1 (the primary)
// or shard-2.
func prepare(id, primary string, now int64, body Txn) TxnCmd {
	return TxnCmd{ID: id, Primary: primary, Participants: []string{primary, "shard-x"}, Now: now, Deadline: now + 100, Body: body}
}

// TestTwoPhaseOnPrimary walks a transaction through prepare and decide on
// its primary shard (the harness FSM is shard-1), with replays of each entry.
func TestTwoPhaseOnPrimary(t *testing.T) {
	h := newHarness(t)
	h.put("a", "10")
	body := Txn{Compares: []Compare{valueIs("a", "10")}, Success: []Op{putOp("a", "5"), get("a")}, Failure: []Op{get("a")}}
	p := prepare("t1", "shard-1", 1000, body)
	r := h.txn(CommandTxnPrepare, p)
	if r.Err != nil || !r.Txn.Succeeded || len(r.Txn.Results) != 3 || string(r.Txn.Results[1].KV.Value) != "10" {
		t.Fatalf("prepare: %+v %+v", r, r.Txn)
	}
	if id, ok := h.f.Lock("a"); !ok || id != "t1" {
		t.Fatalf("a not locked by t1: %q %v", id, ok)
	}
	if rec, ok := h.f.Record("t1"); !ok || rec.State != StatePending || rec.StartedAt != 1000 {
		t.Fatalf("record after prepare: %+v %v", rec, ok)
	}
	// Replayed prepare: same vote, no change.
	if r2 := h.txn(CommandTxnPrepare, p); r2.Err != nil || !r2.Txn.Succeeded {
		t.Fatalf("replayed prepare: %+v", r2)
	}
	// Writes, single-shard transactions and other prepares on a locked key fail.
	if r := h.put("a", "x"); !errors.Is(r.Err, ErrLocked) || r.LockedBy != "t1" {
		t.Fatalf("put on locked key: %+v", r)
	}
	if r := h.apply(EncodeDelete("a", Condition{})); !errors.Is(r.Err, ErrLocked) {
		t.Fatalf("delete on locked key: %+v", r)
	}
	if r := h.txn(CommandTxn, TxnCmd{Body: Txn{Success: []Op{get("a")}}}); !errors.Is(r.Err, ErrLocked) {
		t.Fatalf("txn on locked key: %+v", r)
	}
	if r := h.txn(CommandTxnPrepare, prepare("t2", "shard-2", 1000, Txn{Success: []Op{putOp("a", "1")}})); !errors.Is(r.Err, ErrLocked) {
		t.Fatalf("conflicting prepare: %+v", r)
	}
	if kv, _ := h.f.Get("a"); string(kv.Value) != "10" {
		t.Fatalf("staged write visible before the decision: %s", kv.Value)
	}

	d := TxnCmd{ID: "t1", Outcome: OutcomeSuccess, Now: 2000, Participants: []string{"shard-1", "shard-x"}}
	r = h.txn(CommandTxnDecide, d)
	if r.Err != nil || r.Txn.Record.State != StateCommitted || !r.Txn.Record.Succeeded || r.Txn.Record.DecidedAt != 2000 {
		t.Fatalf("decide: %+v %+v", r, r.Txn.Record)
	}
	if value(t, h.f, "a") != "5" {
		t.Fatalf("primary's staged write not applied: %s", value(t, h.f, "a"))
	}
	if _, ok := h.f.Lock("a"); ok {
		t.Fatal("lock survives the decision")
	}
	// A second, different decision (recovery racing the coordinator) loses.
	r = h.txn(CommandTxnDecide, TxnCmd{ID: "t1", Outcome: OutcomeAborted, Now: 3000, Participants: []string{"shard-1", "shard-x"}})
	if r.Txn.Record.State != StateCommitted || value(t, h.f, "a") != "5" {
		t.Fatalf("second decision changed the record: %+v", r.Txn.Record)
	}
	// A late prepare replay must not lock again.
	if r := h.txn(CommandTxnPrepare, p); !errors.Is(r.Err, ErrTxnFinished) {
		t.Fatalf("prepare after decision: %+v", r)
	}
	if _, ok := h.f.Lock("a"); ok {
		t.Fatal("late prepare locked a key")
	}
}

// TestParticipantResolve covers a non-primary participant: resolve applies
// the chosen branch once, replays are no-ops, and a prepare that arrives
// after its transaction was resolved (aborted by recovery) votes no.
func TestParticipantResolve(t *testing.T) {
	h := newHarness(t)
	h.put("b", "1")
	body := Txn{Compares: []Compare{valueIs("b", "0")}, Success: []Op{putOp("b", "S")}, Failure: []Op{putOp("b", "F")}}
	p := prepare("t1", "shard-9", 10, body)
	if r := h.txn(CommandTxnPrepare, p); r.Err != nil || r.Txn.Succeeded {
		t.Fatalf("prepare: compare should fail: %+v", r)
	}
	if _, ok := h.f.Record("t1"); ok {
		t.Fatal("non-primary created a record")
	}
	res := TxnCmd{ID: "t1", Outcome: OutcomeFailure, Now: 20}
	h.txn(CommandTxnResolve, res)
	h.txn(CommandTxnResolve, res) // replay
	kv, _ := h.f.Get("b")
	if string(kv.Value) != "F" || kv.Version != 2 {
		t.Fatalf("after resolve: %+v", kv)
	}
	if s := h.f.Transactions(); len(s.Staged) != 0 || s.LockCount != 0 || s.DoneCount != 1 {
		t.Fatalf("leftover state: %+v", s)
	}

	// Abort before the prepare arrives: the late prepare votes no.
	h.txn(CommandTxnResolve, TxnCmd{ID: "t2", Outcome: OutcomeAborted, Now: 30})
	if r := h.txn(CommandTxnPrepare, prepare("t2", "shard-9", 25, body)); !errors.Is(r.Err, ErrTxnFinished) {
		t.Fatalf("prepare after abort: %+v", r)
	}
	// A prepare applied after its deadline votes no.
	late := prepare("t3", "shard-9", 100, body)
	late.Now = late.Deadline + 1
	if r := h.txn(CommandTxnPrepare, late); !errors.Is(r.Err, ErrTxnFinished) {
		t.Fatalf("prepare past deadline: %+v", r)
	}
	// GC forgets markers older than Before.
	h.txn(CommandTxnGC, TxnCmd{Now: 1000, Before: 25})
	if s := h.f.Transactions(); s.DoneCount != 1 {
		t.Fatalf("gc: want only t2's marker left, got %d", s.DoneCount)
	}
}

// TestRecoveryAbortWithoutRecord: recovery aborts a transaction whose
// primary never prepared; the aborted record refuses the late prepare, a
// commit decision cannot create a record, and GC keeps unresolved records.
func TestRecoveryAbortWithoutRecord(t *testing.T) {
	h := newHarness(t)
	if r := h.txn(CommandTxnDecide, TxnCmd{ID: "t1", Outcome: OutcomeSuccess, Now: 5, Participants: []string{"shard-1", "shard-x"}}); !errors.Is(r.Err, ErrNoRecord) {
		t.Fatalf("commit without record: %+v", r)
	}
	r := h.txn(CommandTxnDecide, TxnCmd{ID: "t1", Outcome: OutcomeAborted, Now: 5, Participants: []string{"shard-1", "shard-2"}})
	if r.Txn.Record.State != StateAborted || len(r.Txn.Record.Participants) != 2 {
		t.Fatalf("abort without record: %+v", r.Txn.Record)
	}
	if r := h.txn(CommandTxnPrepare, prepare("t1", "shard-1", 1, Txn{Success: []Op{putOp("a", "1")}})); !errors.Is(r.Err, ErrTxnFinished) {
		t.Fatalf("late primary prepare: %+v", r)
	}
	h.txn(CommandTxnGC, TxnCmd{Now: 100, Before: 100})
	if _, ok := h.f.Record("t1"); !ok {
		t.Fatal("GC removed a record not yet marked resolved")
	}
	h.txn(CommandTxnResolved, TxnCmd{ID: "t1"})
	h.txn(CommandTxnGC, TxnCmd{Now: 100, Before: 100})
	if _, ok := h.f.Record("t1"); ok {
		t.Fatal("GC kept a resolved record past retention")
	}
}

func TestTxnCommandRoundTrip(t *testing.T) {
	c := TxnCmd{ID: "id", Primary: "shard-2", Participants: []string{"shard-2", "shard-1"}, Now: 7, Deadline: 9,
		Outcome: OutcomeFailure, Before: 3, Body: Txn{
			Compares: []Compare{{Key: "k", Target: TargetRevision, Op: OpLess, Number: 4, Value: []byte("v")}},
			Success:  []Op{putOp("a", "1"), get("b")}, Failure: []Op{delOp("c")}}}
	for _, typ := range []CommandType{CommandTxn, CommandTxnPrepare, CommandTxnDecide, CommandTxnResolve, CommandTxnResolved, CommandTxnGC} {
		b := EncodeTxn(typ, c)
		got, err := Decode(b)
		if err != nil || got.Type != typ || got.Txn == nil {
			t.Fatalf("%v: %v %+v", typ, err, got)
		}
		if again := EncodeTxn(typ, *got.Txn); !bytes.Equal(again, b) {
			t.Fatalf("%v: re-encoding differs", typ)
		}
		for i := 2; i < len(b); i++ {
			if _, err := Decode(b[:i]); err == nil {
				t.Fatalf("%v: truncated at %d decoded", typ, i)
			}
		}
	}
}

// TestSnapshotKeepsTransactions: locks, staged parts, records and finished
// markers survive a checkpoint, and the restored FSM continues the
// protocol exactly like the original.
func TestSnapshotKeepsTransactions(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1")
	h.txn(CommandTxnPrepare, prepare("t1", "shard-1", 10, Txn{Success: []Op{putOp("a", "2"), putOp("z", "9")}}))
	h.txn(CommandTxnPrepare, prepare("t2", "shard-7", 10, Txn{Success: []Op{putOp("b", "2")}}))
	h.txn(CommandTxnResolve, TxnCmd{ID: "t0", Outcome: OutcomeAborted, Now: 5})
	snap := persist(t, h.f)

	g := New("shard-1")
	if err := restore(g, snap); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(persist(t, g), snap) {
		t.Fatal("restored state persists differently")
	}
	for _, k := range []string{"a", "z", "b"} {
		if _, ok := g.Lock(k); !ok {
			t.Fatalf("lock on %s lost", k)
		}
	}
	// Continue both FSMs identically.
	h2 := &harness{t: t, f: g, idx: h.idx}
	for _, hh := range []*harness{h, h2} {
		hh.txn(CommandTxnDecide, TxnCmd{ID: "t1", Outcome: OutcomeSuccess, Now: 20, Participants: []string{"shard-1", "shard-x"}})
		hh.txn(CommandTxnResolve, TxnCmd{ID: "t2", Outcome: OutcomeAborted, Now: 20})
	}
	if !bytes.Equal(persist(t, h.f), persist(t, g)) {
		t.Fatal("original and restored FSM diverged")
	}
	if value(t, g, "a") != "2" || value(t, g, "z") != "9" || value(t, g, "b") != "<absent>" {
		t.Fatalf("restored FSM resolved wrongly: a=%s z=%s b=%s", value(t, g, "a"), value(t, g, "z"), value(t, g, "b"))
	}
	if s := g.Transactions(); s.LockCount != 0 || len(s.Staged) != 0 {
		t.Fatalf("locks left: %+v", s)
	}
}

// TestRestoreVersion1Checkpoint: a checkpoint written before transactions
// existed (kind "kv", untagged records) still restores.
func TestRestoreVersion1Checkpoint(t *testing.T) {
	hdr := craftHeader(SnapshotKind, 10)
	b := craft(t, hdr, entry{key: "a", value: []byte("v"), create: 2, mod: 5, version: 3})
	f := New("shard-1")
	if err := restore(f, b); err != nil {
		t.Fatal(err)
	}
	if value(t, f, "a") != "v" {
		t.Fatal("v1 key lost")
	}
}

func craftHeader(kind string, index uint64) snapshot.Header {
	return snapshot.Header{Kind: kind, Group: "shard-1", Index: index, Term: 1}
}
