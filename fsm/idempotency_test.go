package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"testing"

	"github.com/hashicorp/raft"
)

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// once wraps inner under key, with the request hash of body, at leader time now.
func once(key, body string, now int64, inner []byte) []byte {
	return EncodeIdempotent(key, hashOf(body), now, inner)
}

// TestARetriedPutAppliesOnceAndReturnsTheFirstResult: put k=v1 under key
// A, an ordinary put k=v2, then the retry of A. The retry changes nothing
// and answers what the first put answered: its revision, index and term.
func TestARetriedPutAppliesOnceAndReturnsTheFirstResult(t *testing.T) {
	h := newHarness(t)
	first := h.apply(once("A", "put k v1", 100, EncodePut("k", []byte("v1"), Condition{})))
	if first.Err != nil || first.Replayed || first.KV.ModRevision != 1 {
		t.Fatalf("first put: %+v", first)
	}
	h.put("k", "v2")
	h.idx++
	retry := h.f.Apply(&raft.Log{Index: h.idx, Term: 7, Type: raft.LogCommand,
		Data: once("A", "put k v1", 200, EncodePut("k", []byte("v1"), Condition{}))}).(*Result)
	if retry.Err != nil || !retry.Replayed {
		t.Fatalf("retry: %+v, want the replayed first result", retry)
	}
	if retry.Index != 1 || retry.Term != 1 || retry.KV.ModRevision != 1 || retry.KV.Version != 1 || retry.Found {
		t.Fatalf("retry answered index %d term %d %+v found=%v; the first put was index 1 term 1, revision 1, version 1, new key",
			retry.Index, retry.Term, retry.KV, retry.Found)
	}
	if got := value(t, h.f, "k"); got != "v2" {
		t.Fatalf("k = %q after the retry, want v2 (the retry must not apply again)", got)
	}
	if h.f.AppliedIndex() != 3 {
		t.Fatalf("applied index %d, want 3: a replay still counts as applied", h.f.AppliedIndex())
	}
}

// TestAKeyReusedForAnotherRequestIsRefused: the same key with another
// request hash is refused and changes nothing; the key still replays its
// own request.
func TestAKeyReusedForAnotherRequestIsRefused(t *testing.T) {
	h := newHarness(t)
	h.apply(once("A", "put k v1", 100, EncodePut("k", []byte("v1"), Condition{})))
	r := h.apply(once("A", "delete k", 101, EncodeDelete("k", Condition{})))
	if !errors.Is(r.Err, ErrIdempotencyMismatch) {
		t.Fatalf("reused key: %v, want ErrIdempotencyMismatch", r.Err)
	}
	if got := value(t, h.f, "k"); got != "v1" {
		t.Fatalf("k = %q, want v1: a refused request changes nothing", got)
	}
	if r := h.apply(once("A", "put k v1", 102, EncodePut("k", []byte("v1"), Condition{}))); !r.Replayed {
		t.Fatalf("the key's own request: %+v, want a replay", r)
	}
}

// TestAFailedPreconditionIsRememberedButALockIsNot: a conditional put that
// failed is the write's answer and replays as such; one refused by a
// transaction's lock decided nothing, so its retry applies once the lock
// is gone.
func TestAFailedPreconditionIsRememberedButALockIsNot(t *testing.T) {
	h := newHarness(t)
	h.put("k", "v0") // revision 1
	stale := once("P", "cas k", 10, EncodePut("k", []byte("x"), Condition{Kind: CondRevision, Revision: 99}))
	if r := h.apply(stale); !errors.Is(r.Err, ErrPrecondition) || r.KV.ModRevision != 1 {
		t.Fatalf("stale CAS: %+v", r)
	}
	h.put("k", "v1") // revision 3
	if r := h.apply(stale); !r.Replayed || !errors.Is(r.Err, ErrPrecondition) || r.KV.ModRevision != 1 || r.Index != 2 {
		t.Fatalf("retried stale CAS: %+v, want the first answer (precondition failed at revision 1, index 2)", r)
	}

	h.apply(EncodeTxn(CommandTxnPrepare, prepare("shard-1.t", "shard-1", 10, Txn{Success: []Op{putOp("l", "t")}})))
	locked := once("L", "put l mine", 11, EncodePut("l", []byte("mine"), Condition{}))
	if r := h.apply(locked); !errors.Is(r.Err, ErrLocked) {
		t.Fatalf("put on a locked key: %v, want ErrLocked", r.Err)
	}
	h.apply(EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.t", Outcome: OutcomeAborted, Now: 12, Participants: []string{"shard-1"}}))
	if r := h.apply(locked); r.Err != nil || r.Replayed {
		t.Fatalf("retry after the lock went: %+v, want a first application", r)
	}
	if got := value(t, h.f, "l"); got != "mine" {
		t.Fatalf("l = %q, want mine", got)
	}
}

// TestARetriedTxnReturnsItsFirstResults: a compare-and-increment retried
// after another write answers the first results (values included), not
// the failure branch it would take now.
func TestARetriedTxnReturnsItsFirstResults(t *testing.T) {
	h := newHarness(t)
	h.put("n", "1") // revision 1
	incr := once("I", "incr n", 10, EncodeTxn(CommandTxn, TxnCmd{Body: Txn{
		Compares: []Compare{{Key: "n", Target: TargetRevision, Op: OpEqual, Number: 1}},
		Success:  []Op{get("n"), putOp("n", "2")},
	}}))
	first := h.apply(incr)
	if first.Txn == nil || !first.Txn.Succeeded {
		t.Fatalf("increment: %+v", first)
	}
	retry := h.apply(incr)
	if !retry.Replayed || retry.Txn == nil || !retry.Txn.Succeeded || len(retry.Txn.Results) != 2 {
		t.Fatalf("retry: %+v, want the first (succeeded) results", retry)
	}
	if got := string(retry.Txn.Results[0].KV.Value); got != "1" || retry.Txn.Results[1].KV.ModRevision != 2 {
		t.Fatalf("retry results %+v, want get n=1 and put at revision 2", retry.Txn.Results)
	}
	if got := value(t, h.f, "n"); got != "2" {
		t.Fatalf("n = %q, want 2 (incremented once)", got)
	}
}

// TestASecondAttemptOfACrossShardTxnIsAbortedNotCommitted: attempt 1
// commits under key K; a second coordinator's attempt 2 of the same
// request, prepared afterwards, is aborted by its decide and answers
// attempt 1's reply.
func TestASecondAttemptOfACrossShardTxnIsAbortedNotCommitted(t *testing.T) {
	h := newHarness(t)
	parts := []string{"shard-1", "shard-2"}
	body := Txn{Success: []Op{putOp("a", "1")}}
	decide := func(id string, now int64, reply string) []byte {
		return EncodeIdempotentDecide("K", hashOf("txn"), now, []byte(reply),
			EncodeTxn(CommandTxnDecide, TxnCmd{ID: id, Outcome: OutcomeSuccess, Now: now, Participants: parts}))
	}
	h.apply(EncodeTxn(CommandTxnPrepare, prepare("shard-1.one", "shard-1", 10, body)))
	r := h.apply(decide("shard-1.one", 11, "reply of one"))
	if r.Replayed || r.Txn == nil || r.Txn.Record.State != StateCommitted {
		t.Fatalf("attempt 1 decide: %+v", r)
	}
	h.apply(EncodeTxn(CommandTxnPrepare, prepare("shard-1.two", "shard-1", 12, Txn{Success: []Op{putOp("a", "2")}})))
	r = h.apply(decide("shard-1.two", 13, "reply of two"))
	if !r.Replayed || string(r.Reply) != "reply of one" {
		t.Fatalf("attempt 2 decide: %+v, want attempt 1's reply replayed", r)
	}
	if r.Txn == nil || r.Txn.Record == nil || r.Txn.Record.ID != "shard-1.two" || r.Txn.Record.State != StateAborted {
		t.Fatalf("attempt 2's record: %+v, want it aborted", r.Txn)
	}
	if got := value(t, h.f, "a"); got != "1" {
		t.Fatalf("a = %q, want 1: only attempt 1 committed", got)
	}
	if _, locked := h.f.Lock("a"); locked {
		t.Fatal("attempt 2 still locks a after its abort")
	}
	// The coordinator retrying attempt 1's own decide gets its reply too,
	// and the record keeps its commit.
	r = h.apply(decide("shard-1.one", 14, "reply of one"))
	if !r.Replayed || r.Txn.Record.State != StateCommitted {
		t.Fatalf("attempt 1's decide again: %+v", r)
	}
}

// TestAnAbortedAttemptIsNotRemembered: recovery aborted attempt 1 first;
// its decide leaves the key free, so the next attempt can commit.
func TestAnAbortedAttemptIsNotRemembered(t *testing.T) {
	h := newHarness(t)
	parts := []string{"shard-1", "shard-2"}
	h.apply(EncodeTxn(CommandTxnPrepare, prepare("shard-1.one", "shard-1", 10, Txn{Success: []Op{putOp("a", "1")}})))
	h.apply(EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.one", Outcome: OutcomeAborted, Now: 11, Participants: parts}))
	dec := EncodeIdempotentDecide("K", hashOf("txn"), 12, []byte("reply"),
		EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.one", Outcome: OutcomeSuccess, Now: 12, Participants: parts}))
	if r := h.apply(dec); r.Replayed || r.Txn.Record.State != StateAborted {
		t.Fatalf("decide of an aborted attempt: %+v", r)
	}
	if _, ok := h.f.Remembered("K"); ok {
		t.Fatal("an aborted attempt was remembered")
	}
}

// TestKeysAreForgottenOnlyByTheGCEntry: the table ages by the leader
// times in the entries; a GC entry with a cutoff forgets the older keys
// only, and a forgotten key applies again.
func TestKeysAreForgottenOnlyByTheGCEntry(t *testing.T) {
	h := newHarness(t)
	old := once("old", "put a", 100, EncodePut("a", []byte("x"), Condition{}))
	h.apply(old)
	h.apply(once("new", "put b", 200, EncodePut("b", []byte("y"), Condition{})))
	if s := h.f.Idempotency(); s.Keys != 2 || s.Oldest != 100 {
		t.Fatalf("summary %+v, want 2 keys, oldest 100", s)
	}
	if r := h.apply(EncodeIdempotencyGC(300, 150)); r.Err != nil || r.Count != 1 {
		t.Fatalf("GC: %+v, want 1 key forgotten", r)
	}
	if _, ok := h.f.Remembered("new"); !ok {
		t.Fatal("GC forgot a key stamped after its cutoff")
	}
	if r := h.apply(old); r.Replayed || r.KV.Version != 2 {
		t.Fatalf("forgotten key's request: %+v, want it applied again (version 2)", r)
	}
}

// TestIdempotencyTableIsDeterministicAndCheckpointed: two replicas fed the
// same entries write identical checkpoints, and a restored replica replays
// a remembered key as the original does.
func TestIdempotencyTableIsDeterministicAndCheckpointed(t *testing.T) {
	entries := [][]byte{
		EncodePut("n", []byte("0"), Condition{}),
		once("A", "put k", 10, EncodePut("k", []byte("v"), Condition{})),
		once("B", "del n", 11, EncodeDelete("n", Condition{})),
		once("C", "txn", 12, EncodeTxn(CommandTxn, TxnCmd{Body: Txn{Success: []Op{putOp("m", "1"), get("k")}}})),
		once("D", "cas", 13, EncodePut("k", nil, Condition{Kind: CondAbsent})),
	}
	a, b := newHarness(t), newHarness(t)
	for _, e := range entries {
		a.apply(e)
		b.apply(e)
	}
	snap := persist(t, a.f)
	if !bytes.Equal(snap, persist(t, b.f)) {
		t.Fatal("two replicas of the same entries wrote different checkpoints")
	}
	g := New("shard-1")
	if err := restore(g, snap); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !bytes.Equal(persist(t, g), snap) {
		t.Fatal("the restored table persists differently")
	}
	for _, key := range []string{"A", "B", "C", "D"} {
		want, _ := a.f.Remembered(key)
		got, ok := g.Remembered(key)
		if !ok || !bytes.Equal(got.Hash, want.Hash) || got.At != want.At || got.Result.Index != want.Result.Index {
			t.Fatalf("restored %s: %+v, want %+v", key, got, want)
		}
	}
	r := g.Apply(commandLog(6, entries[3])).(*Result)
	if !r.Replayed || len(r.Txn.Results) != 2 || string(r.Txn.Results[1].KV.Value) != "v" {
		t.Fatalf("replay on the restored replica: %+v", r)
	}
}

// TestACheckpointFromBeforeIdempotencyRestores reads a checkpoint written
// by the build before the idempotency table (testdata; keys, a staged
// part, records and a finished marker) and finds everything in it.
func TestACheckpointFromBeforeIdempotencyRestores(t *testing.T) {
	old, err := os.ReadFile("testdata/checkpoint-kv2-before-idempotency.snap")
	if err != nil {
		t.Fatal(err)
	}
	f := New("shard-1")
	if err := restore(f, old); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if got := value(t, f, "d"); got != "4" || value(t, f, "a") != "1" {
		t.Fatalf("keys after restore: a=%q d=%q", value(t, f, "a"), got)
	}
	if _, ok := f.Staged("shard-1.open"); !ok {
		t.Fatal("the staged part is missing")
	}
	if id, _ := f.Lock("c"); id != "shard-1.open" {
		t.Fatalf("lock of c = %q", id)
	}
	if rec, ok := f.Record("shard-1.done"); !ok || rec.State != StateCommitted {
		t.Fatalf("record: %+v %v", rec, ok)
	}
	if s := f.Idempotency(); s.Keys != 0 || f.AppliedIndex() != 5 {
		t.Fatalf("idempotency %+v, applied %d", s, f.AppliedIndex())
	}
}

// TestBadIdempotencyEntriesAreRefused: entries no cluster writes change
// nothing, and an entry wrapping a command of a newer raftkv halts.
func TestBadIdempotencyEntriesAreRefused(t *testing.T) {
	put := EncodePut("k", []byte("v"), Condition{})
	for name, tc := range map[string]struct {
		entry []byte
		want  error
	}{
		"empty key":       {EncodeIdempotent("", hashOf("x"), 1, put), ErrInvalid},
		"short hash":      {EncodeIdempotent("K", []byte("x"), 1, put), ErrInvalid},
		"wraps a noop":    {EncodeIdempotent("K", hashOf("x"), 1, EncodeNoop()), ErrInvalid},
		"wraps a prepare": {EncodeIdempotent("K", hashOf("x"), 1, EncodeTxn(CommandTxnPrepare, prepare("shard-1.x", "shard-1", 1, Txn{Success: []Op{putOp("a", "1")}}))), ErrInvalid},
		"decide of a put": {EncodeIdempotentDecide("K", hashOf("x"), 1, nil, put), ErrInvalid},
		"nested":          {EncodeIdempotent("K", hashOf("x"), 1, EncodeIdempotent("K", hashOf("x"), 1, put)), ErrMalformed},
		"wraps garbage":   {EncodeIdempotent("K", hashOf("x"), 1, []byte{1, 1, 0xff}), ErrMalformed},
		"empty key put":   {EncodeIdempotent("K", hashOf("x"), 1, EncodePut("", nil, Condition{})), ErrInvalid},
		"trailing bytes":  {append(EncodeIdempotencyGC(1, 1), 0), ErrMalformed},
	} {
		h := newHarness(t)
		r := h.apply(tc.entry)
		if !errors.Is(r.Err, tc.want) {
			t.Errorf("%s: %v, want %v", name, r.Err, tc.want)
		}
		if h.f.Len() != 0 || h.f.Idempotency().Keys != 0 {
			t.Errorf("%s: a refused entry changed the state", name)
		}
	}
	l := commandLog(1, EncodeIdempotent("K", hashOf("x"), 1, []byte{CommandVersion, 23}))
	if _, err := applyEntry(&New("shard-1").st, l); !errors.As(err, new(*NewerEntryError)) {
		t.Fatalf("an entry wrapping type 23: %v, want the newer-entry halt", err)
	}
}
