package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// Unit tests of the coordinator (txn_coord.go): every transition of its
// state diagram (cluster/DESIGN.md, "Cross-shard transactions"), and a
// crash after each step followed by recovery, against fake shards.

// fakeShards are participants without raft or network: each shard is a
// real fsm.FSM that applies, one at a time, the entries its leader would
// propose for each call (txn_ops.go), and its results are read the same
// way (voteOf, decidedRecord). A prepare's leader time and deadline come
// from the machine's clock, as on one leader. Faults make a call fail.
type fakeShards struct {
	mu     sync.Mutex
	fsms   map[string]*fsm.FSM
	index  map[string]uint64
	faults map[string]fault // by "op shard"
}

// fault is what goes wrong with one kind of call to one shard.
type fault int

const (
	noFault    fault = iota
	failBefore       // the call fails before anything is proposed (no leader)
	loseAnswer       // the entry is applied, and the answer is lost (outcome unknown)
	tooLate          // a prepare reaches the shard's leader after its time to live
	noAnswer         // a prepare is never answered; the caller gives up
)

var _ participants = (*fakeShards)(nil)

func newFakeShards(names ...string) *fakeShards {
	f := &fakeShards{fsms: map[string]*fsm.FSM{}, index: map[string]uint64{}, faults: map[string]fault{}}
	for _, name := range names {
		f.fsms[name] = fsm.New(name)
	}
	return f
}

func (f *fakeShards) inject(op, shard string, x fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op+" "+shard] = x
}

func (f *fakeShards) faultOf(op, shard string) fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.faults[op+" "+shard]
}

// apply commits cmd to shard's log: the next index, applied at once.
func (f *fakeShards) apply(shard string, cmd []byte) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index[shard]++
	return f.fsms[shard].Apply(&raft.Log{Index: f.index[shard], Term: 1, Type: raft.LogCommand, Data: cmd})
}

// call runs one operation on shard under its faults.
func (f *fakeShards) call(ctx context.Context, op, shard string, cmd []byte) (any, error) {
	switch f.faultOf(op, shard) {
	case failBefore:
		return nil, fmt.Errorf("%w: %s on %s: no leader (fault)", ErrUnavailable, op, shard)
	case noAnswer:
		<-ctx.Done()
		return nil, fmt.Errorf("%w: %s on %s: no answer (fault)", ErrUnavailable, op, shard)
	}
	resp := f.apply(shard, cmd)
	if f.faultOf(op, shard) == loseAnswer {
		return nil, fmt.Errorf("%w: %s on %s: answer lost (fault)", ErrIndeterminate, op, shard)
	}
	return resp, nil
}

func (f *fakeShards) prepareOn(ctx context.Context, shard string, cmd fsm.TxnCmd, ttl time.Duration) (prepareReply, error) {
	cmd.Now = time.Now().UnixNano()
	cmd.Deadline = cmd.Now + int64(ttl)
	if f.faultOf(opTxnPrepare, shard) == tooLate {
		cmd.Deadline = cmd.Now - 1
	}
	resp, err := f.call(ctx, opTxnPrepare, shard, fsm.EncodeTxn(fsm.CommandTxnPrepare, cmd))
	if err != nil {
		return prepareReply{}, err
	}
	r, err := txnResult(resp)
	if err != nil {
		return prepareReply{}, err
	}
	return voteOf(r)
}

func (f *fakeShards) decideOn(ctx context.Context, primary, id string, o fsm.Outcome, participants []string) (fsm.Record, error) {
	resp, err := f.call(ctx, opTxnDecide, primary, fsm.EncodeTxn(fsm.CommandTxnDecide,
		fsm.TxnCmd{ID: id, Outcome: o, Participants: participants, Now: time.Now().UnixNano()}))
	if err != nil {
		return fsm.Record{}, err
	}
	return decidedRecord(id, resp)
}

func (f *fakeShards) resolveOn(ctx context.Context, shard, id string, o fsm.Outcome) error {
	return f.checked(ctx, opTxnResolve, shard, fsm.EncodeTxn(fsm.CommandTxnResolve, fsm.TxnCmd{ID: id, Outcome: o, Now: time.Now().UnixNano()}))
}

func (f *fakeShards) markResolvedOn(ctx context.Context, primary, id string) error {
	return f.checked(ctx, opTxnMarkResolved, primary, fsm.EncodeTxn(fsm.CommandTxnResolved, fsm.TxnCmd{ID: id, Now: time.Now().UnixNano()}))
}

func (f *fakeShards) checked(ctx context.Context, op, shard string, cmd []byte) error {
	resp, err := f.call(ctx, op, shard, cmd)
	if err != nil {
		return err
	}
	r, err := txnResult(resp)
	if err != nil {
		return err
	}
	return refused(r)
}

func (f *fakeShards) decideOnceOn(ctx context.Context, primary string, a decideOnceArgs) (onceDecided, error) {
	now := time.Now().UnixNano()
	decide := fsm.EncodeTxn(fsm.CommandTxnDecide, fsm.TxnCmd{ID: a.Decide.ID, Outcome: a.Decide.Outcome, Participants: a.Decide.Participants, Now: now})
	resp, err := f.call(ctx, opTxnDecideOnce, primary, fsm.EncodeIdempotentDecide(a.Once.Key, a.Once.Hash, now, a.Reply, decide))
	if err != nil {
		return onceDecided{}, err
	}
	return decidedOnce(a.Decide.ID, resp)
}

func (f *fakeShards) rememberedOn(_ context.Context, primary string, o onceArgs) (rememberedReply, error) {
	return rememberedFrom(f.fsms[primary], o.Key), nil
}

func (f *fakeShards) recordOn(_ context.Context, primary, id string) (recordReply, error) {
	rec, ok := f.fsms[primary].Record(id)
	return recordReply{Found: ok, Record: rec}, nil
}

// The transfer every test runs: a (on the primary, shard-1) holds 100 and
// b (on shard-2) 0; if a is still 100, move 30 to b and read b, else read a.
var (
	testShardOf = map[string]string{"a": "shard-1", "b": "shard-2"}
	testTxn     = TxnRequest{
		Compares: []fsm.Compare{{Key: "a", Target: fsm.TargetValue, Op: fsm.OpEqual, Value: []byte("100")}},
		Success: []fsm.Op{{Kind: fsm.OpPut, Key: "a", Value: []byte("70")}, {Kind: fsm.OpPut, Key: "b", Value: []byte("30")},
			{Kind: fsm.OpGet, Key: "b"}},
		Failure: []fsm.Op{{Kind: fsm.OpGet, Key: "a"}},
	}
)

// harness is a coordinator over fake shards.
type harness struct {
	c      *coordinator
	shards *fakeShards
	cfg    TxnConfig
	// hook, set before run, is the test hook (TxnHook).
	hook func(step TxnStep, id, shard string) error
	// once, set before run, is the transaction's idempotency key.
	once *onceArgs
	wg   sync.WaitGroup // background resolves
	mu   sync.Mutex
	ids  []string // the id of every attempt, in order
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{shards: newFakeShards("shard-1", "shard-2"), cfg: DefaultTxnConfig()}
	stop := make(chan struct{})
	h.c = &coordinator{shards: h.shards, clock: systemClock{}, config: func() TxnConfig { return h.cfg },
		step: func(step TxnStep, id, shard string) error {
			if step == StepPrepare && shard == "shard-1" {
				h.mu.Lock()
				h.ids = append(h.ids, id)
				h.mu.Unlock()
			}
			if h.hook != nil {
				return h.hook(step, id, shard)
			}
			return nil
		},
		spawn: func(f func()) {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				f()
			}()
		},
		stop: stop, logger: hclog.NewNullLogger()}
	t.Cleanup(func() {
		h.wg.Wait()
		close(stop)
	})
	h.shards.apply("shard-1", fsm.EncodePut("a", []byte("100"), fsm.Condition{}))
	h.shards.apply("shard-2", fsm.EncodePut("b", []byte("0"), fsm.Condition{}))
	return h
}

// run coordinates testTxn and waits for the background resolves.
func (h *harness) run(t *testing.T) (TxnResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := h.c.run(ctx, testTxn, planTxn(testTxn, func(k string) string { return testShardOf[k] }), h.once)
	h.wg.Wait()
	return res, err
}

// attempt returns the id of attempt i (0-based).
func (h *harness) attempt(t *testing.T, i int) string {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if i >= len(h.ids) {
		t.Fatalf("attempt %d never prepared (ids %v)", i, h.ids)
	}
	return h.ids[i]
}

// recoverAll does what every shard's leader's recovery does once the
// recovery timeout has passed (txn_recovery.go, without the timing): it
// finishes each staged part and each unresolved record, in passes (one
// shard's recovery can leave a record for the primary's next pass) until
// nothing is left to finish.
func (h *harness) recoverAll(t *testing.T) {
	t.Helper()
	for pass := 0; h.unfinished() && pass < 3; pass++ {
		h.recoveryPass(t)
	}
}

// unfinished reports whether some shard holds a staged part or an
// unresolved record.
func (h *harness) unfinished() bool {
	for _, f := range h.shards.fsms {
		s := f.Transactions()
		if len(s.Staged) > 0 {
			return true
		}
		for _, r := range s.Records {
			if !r.Resolved {
				return true
			}
		}
	}
	return false
}

func (h *harness) recoveryPass(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, shard := range []string{"shard-1", "shard-2"} {
		sum := h.shards.fsms[shard].Transactions()
		for _, st := range sum.Staged {
			if _, err := h.c.recoverPart(ctx, shard, st); err != nil {
				t.Fatalf("recover %s's part of %s: %v", shard, st.ID, err)
			}
		}
		for _, r := range sum.Records {
			if !r.Resolved {
				if _, err := h.c.recoverRecord(ctx, r); err != nil {
					t.Fatalf("recover the record of %s: %v", r.ID, err)
				}
			}
		}
	}
}

func (h *harness) value(shard, key string) string {
	kv, ok := h.shards.fsms[shard].Get(key)
	if !ok {
		return "<absent>"
	}
	return string(kv.Value)
}

// settled checks how every history must end: attempt id's record on the
// primary is decided as want and marked resolved, no shard holds a staged
// part or a lock, and a and b hold what that outcome wrote.
func (h *harness) settled(t *testing.T, id string, want fsm.TxnState) {
	t.Helper()
	rec, ok := h.shards.fsms["shard-1"].Record(id)
	if !ok || rec.State != want || !rec.Resolved {
		t.Fatalf("record of %s: %+v (found %v), want %v and resolved", id, rec, ok, want)
	}
	for shard, f := range h.shards.fsms {
		if s := f.Transactions(); len(s.Staged) > 0 || s.LockCount > 0 {
			t.Fatalf("%s still holds %d staged parts and %d locks", shard, len(s.Staged), s.LockCount)
		}
	}
	wantA, wantB := "100", "0"
	if want == fsm.StateCommitted {
		wantA, wantB = "70", "30"
	}
	if a, b := h.value("shard-1", "a"), h.value("shard-2", "b"); a != wantA || b != wantB {
		t.Fatalf("a=%s b=%s, want %s and %s", a, b, wantA, wantB)
	}
}

// latePrepareVotesNo sends attempt id's prepare to shard now, long after
// the transaction ended: it must vote no and lock nothing.
func (h *harness) latePrepareVotesNo(t *testing.T, id, shard string) {
	t.Helper()
	plan := planTxn(testTxn, func(k string) string { return testShardOf[k] })
	cmd := fsm.TxnCmd{ID: id, Primary: "shard-1", Participants: plan.shards, Body: *plan.parts[shard]}
	v, err := h.shards.prepareOn(context.Background(), shard, cmd, time.Minute)
	if err != nil || v.Vote.Yes() {
		t.Fatalf("late prepare of %s on %s: %+v, %v; want a no vote", id, shard, v, err)
	}
	if s := h.shards.fsms[shard].Transactions(); s.LockCount > 0 {
		t.Fatalf("late prepare of %s locked %d keys on %s", id, s.LockCount, shard)
	}
}

// preparing ─every vote yes─▶ deciding ─committed─▶ resolving ─▶ resolved.
func TestCoordinatorCommitsWhenEveryParticipantVotesYes(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(t)
	if err != nil || !res.Succeeded || res.ID != h.attempt(t, 0) {
		t.Fatalf("transfer: %+v, %v", res, err)
	}
	if got := res.Results[2]; !got.Found || string(got.KV.Value) != "0" {
		t.Fatalf("the get of b must see b before the transfer (0), got %+v", got)
	}
	h.settled(t, res.ID, fsm.StateCommitted)
}

// Every vote yes, a compare failed: the failure branch is committed.
func TestCoordinatorCommitsTheFailureBranchWhenACompareFails(t *testing.T) {
	h := newHarness(t)
	h.shards.apply("shard-1", fsm.EncodePut("a", []byte("99"), fsm.Condition{}))
	res, err := h.run(t)
	if err != nil || res.Succeeded || string(res.Results[0].KV.Value) != "99" {
		t.Fatalf("transfer: %+v, %v", res, err)
	}
	rec, _ := h.shards.fsms["shard-1"].Record(res.ID)
	if rec.State != fsm.StateCommitted || rec.Succeeded || !rec.Resolved {
		t.Fatalf("record %+v, want committed with the failure branch", rec)
	}
	if b := h.value("shard-2", "b"); b != "0" {
		t.Fatalf("b=%s: the failure branch writes nothing", b)
	}
}

// preparing ─a no vote─▶ aborting ─▶ 409 when the attempts are spent. The
// vote is no because another transaction holds b (locked), because the
// prepare reached the shard after its time to live (finished), or because
// the shard did not answer within the prepare timeout.
func TestCoordinatorAbortsOnANoVote(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(h *harness)
	}{
		{"locked", func(h *harness) {
			h.shards.apply("shard-2", fsm.EncodeTxn(fsm.CommandTxnPrepare, fsm.TxnCmd{ID: "shard-2.other", Primary: "shard-2",
				Participants: []string{"shard-2"}, Now: 1, Deadline: 2, Body: fsm.Txn{Success: []fsm.Op{{Kind: fsm.OpGet, Key: "b"}}}}))
		}},
		{"finished", func(h *harness) { h.shards.inject(opTxnPrepare, "shard-2", tooLate) }},
		{"no answer in time", func(h *harness) {
			h.cfg.PrepareTimeout = 50 * time.Millisecond
			h.shards.inject(opTxnPrepare, "shard-2", noAnswer)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.cfg.Attempts = 2
			tc.setup(h)
			_, err := h.run(t)
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("want a conflict, got %v", err)
			}
			for i := range 2 {
				id := h.attempt(t, i)
				rec, ok := h.shards.fsms["shard-1"].Record(id)
				if !ok || rec.State != fsm.StateAborted || !rec.Resolved {
					t.Fatalf("attempt %s: record %+v (found %v), want aborted and resolved", id, rec, ok)
				}
				if _, ok := h.shards.fsms["shard-2"].Staged(id); ok {
					t.Fatalf("attempt %s is still staged on shard-2", id)
				}
			}
			if s := h.shards.fsms["shard-1"].Transactions(); len(s.Staged) > 0 || s.LockCount > 0 {
				t.Fatalf("the primary still holds %d parts, %d locks", len(s.Staged), s.LockCount)
			}
		})
	}
}

// preparing ─a prepare fails─▶ aborting ─▶ the error. A prepare whose
// answer was lost may have landed: the abort drops it.
func TestCoordinatorAbortsWhenAPrepareFails(t *testing.T) {
	for name, x := range map[string]fault{"no leader": failBefore, "answer lost": loseAnswer} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.shards.inject(opTxnPrepare, "shard-2", x)
			_, err := h.run(t)
			want := map[fault]error{failBefore: ErrUnavailable, loseAnswer: ErrIndeterminate}[x]
			if !errors.Is(err, want) {
				t.Fatalf("want %v, got %v", want, err)
			}
			h.settled(t, h.attempt(t, 0), fsm.StateAborted)
		})
	}
}

// deciding ─the record is already aborted (recovery came first)─▶ retry:
// the next attempt commits under a new id.
func TestCoordinatorRetriesWhenRecoveryAbortedFirst(t *testing.T) {
	h := newHarness(t)
	var once sync.Once
	h.hook = func(step TxnStep, id, _ string) error {
		if step == StepDecide {
			once.Do(func() {
				// A shard leader took the coordinator for dead and
				// aborted the record.
				if _, err := h.shards.decideOn(context.Background(), "shard-1", id, fsm.OutcomeAborted, []string{"shard-1", "shard-2"}); err != nil {
					t.Errorf("recovery's abort: %v", err)
				}
			})
		}
		return nil
	}
	res, err := h.run(t)
	if err != nil || !res.Succeeded {
		t.Fatalf("transfer: %+v, %v", res, err)
	}
	// The retry may meet the first attempt's lock on shard-2 before the
	// background resolve drops it, and try again.
	h.mu.Lock()
	first, last := h.ids[0], h.ids[len(h.ids)-1]
	h.mu.Unlock()
	if res.ID != last || last == first {
		t.Fatalf("committed as %s, want a later attempt than %s", res.ID, first)
	}
	if rec, _ := h.shards.fsms["shard-1"].Record(first); rec.State != fsm.StateAborted || !rec.Resolved {
		t.Fatalf("first attempt's record %+v, want aborted and resolved", rec)
	}
	h.settled(t, last, fsm.StateCommitted)
}

// deciding ─the decision's answer is lost─▶ outcome unknown (504). The
// decision was made; recovery resolves it everywhere.
func TestCoordinatorWhoseDecisionIsLostLeavesItToRecovery(t *testing.T) {
	h := newHarness(t)
	h.shards.inject(opTxnDecide, "shard-1", loseAnswer)
	_, err := h.run(t)
	if !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("want an indeterminate error, got %v", err)
	}
	id := h.attempt(t, 0)
	if _, ok := h.shards.fsms["shard-2"].Staged(id); !ok {
		t.Fatal("shard-2 was resolved although the coordinator never learned the decision")
	}
	h.shards.inject(opTxnDecide, "shard-1", noFault)
	h.recoverAll(t)
	h.settled(t, id, fsm.StateCommitted)
}

// TestCoordinatorCrashAfterEachStep stops the coordinator (the test hook)
// before each step, that is after the one before, and then lets recovery
// run. Each history ends decided, the same on every shard, with no lock
// left, and a prepare that was never sent votes no if it arrives late:
//
//   - before the primary's prepare: shard-2 prepared, no record. Recovery
//     on shard-2 writes an aborted record on the primary, drops its part.
//   - before shard-2's prepare: the primary prepared, its record pending.
//     Recovery on the primary aborts it and marks shard-2 finished.
//   - before the decision: both prepared, record pending: aborted.
//   - before shard-2's resolve: committed and applied on the primary (the
//     client has its 200); recovery applies it on shard-2.
//   - before marking the record resolved: applied everywhere; recovery
//     marks it.
func TestCoordinatorCrashAfterEachStep(t *testing.T) {
	for _, tc := range []struct {
		name      string
		step      TxnStep
		shard     string
		committed bool
		late      string // the shard whose prepare was never sent
	}{
		{"before the primary's prepare", StepPrepare, "shard-1", false, "shard-1"},
		{"before the participant's prepare", StepPrepare, "shard-2", false, "shard-2"},
		{"before the decision", StepDecide, "shard-1", false, ""},
		{"before the participant's resolve", StepResolve, "shard-2", true, ""},
		{"before marking the record resolved", StepMarkResolved, "shard-1", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.hook = func(step TxnStep, _, shard string) error {
				if step == tc.step && shard == tc.shard {
					return errors.New("crash")
				}
				return nil
			}
			res, err := h.run(t)
			id := h.attempt(t, 0)
			if tc.committed {
				if err != nil || !res.Succeeded || res.ID != id {
					t.Fatalf("the commit point was passed, yet %+v, %v", res, err)
				}
			} else if !errors.Is(err, ErrIndeterminate) {
				t.Fatalf("want an indeterminate error from the stopped coordinator, got %v", err)
			}
			h.hook = nil
			h.recoverAll(t)
			want := fsm.StateAborted
			if tc.committed {
				want = fsm.StateCommitted
			}
			h.settled(t, id, want)
			if tc.late != "" {
				h.latePrepareVotesNo(t, id, tc.late)
			}
		})
	}
}

// Votes and operation names travel between nodes as strings; these are
// their wire values, which nodes of other versions rely on.
func TestTransactionWireValuesAreUnchanged(t *testing.T) {
	for v, want := range map[Vote]string{VoteYes: "yes", VoteLocked: "locked", VoteFinished: "finished"} {
		if string(v) != want {
			t.Fatalf("vote %q, want %q", v, want)
		}
	}
	ops := map[string]string{opTxn: "txn", opTxnPrepare: "txn-prepare", opTxnDecide: "txn-decide",
		opTxnResolve: "txn-resolve", opTxnMarkResolved: "txn-resolved", opTxnRecord: "txn-record"}
	table := (&Node{}).opTable()
	for op, want := range ops {
		if op != want {
			t.Fatalf("operation %q, want %q", op, want)
		}
		if _, ok := table[op]; !ok {
			t.Fatalf("operation %q is not served", op)
		}
	}
	if !VoteYes.Yes() || VoteLocked.Yes() || VoteFinished.Yes() || Vote("maybe").Yes() {
		t.Fatal("only VoteYes is a yes")
	}
}
