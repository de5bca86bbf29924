package fsm

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

const leaseTTL = int64(10 * time.Second)

func (h *harness) leasePut(key, value, lease string) *Result {
	return h.apply(EncodeLeasePut(key, []byte(value), Condition{}, lease))
}

func leaseKeys(t *testing.T, f *FSM, id string) []string {
	t.Helper()
	l, ok := f.Lease(id)
	if !ok {
		t.Fatalf("lease %s missing", id)
	}
	return l.Keys
}

func TestLeasePutNeedsALiveLease(t *testing.T) {
	h := newHarness(t)
	if r := h.leasePut("a", "1", "shard-1.x"); !errors.Is(r.Err, ErrLeaseNotFound) {
		t.Fatalf("put with an unknown lease: %v", r.Err)
	}
	if _, ok := h.f.Get("a"); ok {
		t.Fatal("a put with an unknown lease wrote the key")
	}
	if r := h.apply(EncodeLeaseGrant("shard-1.x", leaseTTL)); r.Err != nil || r.Found {
		t.Fatalf("grant: %+v", r)
	}
	if r := h.apply(EncodeLeaseGrant("shard-1.x", leaseTTL)); r.Err != nil || !r.Found {
		t.Fatalf("repeated grant: %+v", r)
	}
	if r := h.leasePut("a", "1", "shard-1.x"); r.Err != nil || r.KV.Version != 1 {
		t.Fatalf("put with the lease: %+v", r)
	}
	if id, ok := h.f.LeaseOf("a"); !ok || id != "shard-1.x" {
		t.Fatalf("LeaseOf(a) = %q, %v", id, ok)
	}
	if kv, _ := h.f.Get("a"); kv.Lease != "shard-1.x" {
		t.Fatalf("Get(a).Lease = %q, want the lease it was put with", kv.Lease)
	}
	h.put("a", "2")
	if kv, _ := h.f.Get("a"); kv.Lease != "" {
		t.Fatalf("Get(a).Lease = %q after a put without the lease", kv.Lease)
	}
}

func TestAnyOtherWriteDetachesTheKey(t *testing.T) {
	h := newHarness(t)
	h.apply(EncodeLeaseGrant("L", leaseTTL))
	for _, k := range []string{"a", "b", "c", "d", "p/1"} {
		h.leasePut(k, "v", "L")
	}
	h.put("a", "plain")
	h.apply(EncodeDelete("b", Condition{}))
	h.apply(EncodeTxn(CommandTxn, TxnCmd{Body: Txn{Success: []Op{{Kind: OpPut, Key: "c", Value: []byte("t")}}}}))
	h.apply(EncodeDeletePrefix("p/"))
	if got := leaseKeys(t, h.f, "L"); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("keys after other writes: %v, want [d]", got)
	}
	// A revoke now deletes only what is still attached.
	h.apply(EncodeLeaseRevoke("L", LeasePrepare, 1))
	if r := h.apply(EncodeLeaseRevoke("L", LeaseCommit, 0)); r.Count != 1 {
		t.Fatalf("commit deleted %d keys, want 1", r.Count)
	}
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": false} {
		if _, ok := h.f.Get(k); ok != want {
			t.Errorf("%s present=%v, want %v", k, ok, want)
		}
	}
}

func TestLeaseRevokeLocksThenDeletes(t *testing.T) {
	h := newHarness(t)
	h.apply(EncodeLeaseGrant("L", leaseTTL))
	h.leasePut("a", "1", "L")
	h.leasePut("b", "2", "L")
	if r := h.apply(EncodeLeaseRevoke("L", LeasePrepare, 1)); r.Err != nil || r.Count != 2 {
		t.Fatalf("prepare: %+v", r)
	}
	// Prepared: the keys are still there, but frozen.
	if _, ok := h.f.Get("a"); !ok {
		t.Fatal("prepare deleted a key")
	}
	if r := h.put("a", "x"); !errors.Is(r.Err, ErrLocked) || r.LockedBy != LeaseLockPrefix+"L" {
		t.Fatalf("put on a revoking lease's key: %+v", r)
	}
	if r := h.leasePut("c", "3", "L"); !errors.Is(r.Err, ErrLeaseNotFound) {
		t.Fatalf("attach to a revoking lease: %v", r.Err)
	}
	if r := h.apply(EncodeLeaseRevoke("L", LeasePrepare, 1)); r.Err != nil || !r.Found {
		t.Fatalf("repeated prepare: %+v", r)
	}
	if r := h.apply(EncodeLeaseRevoke("L", LeaseCommit, 0)); r.Err != nil || r.Count != 2 {
		t.Fatalf("commit: %+v", r)
	}
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := h.f.Get(k); ok {
			t.Errorf("%s survived the revoke", k)
		}
		if _, ok := h.f.Lock(k); ok {
			t.Errorf("%s still locked", k)
		}
	}
	if _, ok := h.f.Lease("L"); ok {
		t.Fatal("lease survived its commit")
	}
	if r := h.apply(EncodeLeaseRevoke("L", LeaseCommit, 0)); r.Err != nil || r.Found {
		t.Fatalf("repeated commit: %+v", r)
	}
	if r := h.put("a", "again"); r.Err != nil || r.Found {
		t.Fatalf("put after the revoke: %+v", r)
	}
}

func TestLeasePrepareWaitsForATransactionLock(t *testing.T) {
	h := newHarness(t)
	h.apply(EncodeLeaseGrant("L", leaseTTL))
	h.leasePut("a", "1", "L")
	h.apply(EncodeTxn(CommandTxnPrepare, TxnCmd{ID: "shard-1.t", Primary: "shard-1", Participants: []string{"shard-1"},
		Now: 1, Deadline: 2, Body: Txn{Success: []Op{{Kind: OpPut, Key: "a", Value: []byte("t")}}}}))
	if r := h.apply(EncodeLeaseRevoke("L", LeasePrepare, 1)); !errors.Is(r.Err, ErrLocked) || r.LockedBy != "shard-1.t" {
		t.Fatalf("prepare over a txn lock: %+v", r)
	}
	if l, _ := h.f.Lease("L"); l.Revoking {
		t.Fatal("a refused prepare marked the lease revoking")
	}
	// The transaction commits its put, which detaches the key.
	h.apply(EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.t", Outcome: OutcomeSuccess, Now: 2, Participants: []string{"shard-1"}}))
	if r := h.apply(EncodeLeaseRevoke("L", LeasePrepare, 1)); r.Err != nil || r.Count != 0 {
		t.Fatalf("prepare after the txn: %+v", r)
	}
}

func TestLeaseRevokeIsFencedByTerm(t *testing.T) {
	h := newHarness(t)
	h.apply(EncodeLeaseGrant("L", leaseTTL))
	h.leasePut("a", "1", "L")
	h.idx++
	// Decided in term 1, proposed by the same node leading again in term 3.
	out := h.f.Apply(&raft.Log{Index: h.idx, Term: 3, Type: raft.LogCommand, Data: EncodeLeaseRevoke("L", LeasePrepare, 1)})
	if r := out.(*Result); !errors.Is(r.Err, ErrLeaseFenced) {
		t.Fatalf("prepare of an earlier term: %+v", r)
	}
	if l, _ := h.f.Lease("L"); l.Revoking {
		t.Fatal("a fenced prepare marked the lease revoking")
	}
}

func TestLeaseCommandsRefuseBadFields(t *testing.T) {
	h := newHarness(t)
	for _, b := range [][]byte{
		EncodeLeaseGrant("", leaseTTL),
		EncodeLeaseGrant("L", 0),
		EncodeLeaseGrant(string(bytes.Repeat([]byte("x"), MaxLeaseIDBytes+1)), leaseTTL),
		EncodeLeaseRevoke("L", LeasePrepare, 0),
		EncodeLeasePut("", []byte("v"), Condition{}, "L"),
	} {
		if r := h.apply(b); !errors.Is(r.Err, ErrInvalid) {
			t.Errorf("%x: %v, want ErrInvalid", b, r.Err)
		}
	}
	bad := EncodeLeaseRevoke("L", 9, 1)
	if r := h.apply(bad); !errors.Is(r.Err, ErrMalformed) {
		t.Errorf("phase 9: %v, want ErrMalformed", r.Err)
	}
	if r := h.apply(append(EncodeLeaseGrant("L", leaseTTL), 0)); !errors.Is(r.Err, ErrMalformed) {
		t.Errorf("trailing byte: %v, want ErrMalformed", r.Err)
	}
	if h.f.Leases("", false) != nil {
		t.Fatal("a refused command created a lease")
	}
}

func TestLeaseCommandsRoundTripEncode(t *testing.T) {
	for _, c := range []Command{
		{Type: CommandLeaseGrant, Lease: &LeaseCmd{ID: "L", TTL: leaseTTL}},
		{Type: CommandLeaseRevoke, Lease: &LeaseCmd{ID: "L", Phase: LeasePrepare, Term: 7}},
		{Type: CommandLeasePut, Key: "k", Value: []byte("v"), Cond: Condition{Kind: CondAbsent}, Lease: &LeaseCmd{ID: "L"}},
	} {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Type != c.Type || *got.Lease != *c.Lease || got.Key != c.Key || !bytes.Equal(got.Value, c.Value) || got.Cond != c.Cond {
			t.Fatalf("round trip of %v: %+v", c.Type, got)
		}
	}
}

func TestLeaseStateRoundTripsThroughACheckpoint(t *testing.T) {
	h := newHarness(t)
	h.apply(EncodeLeaseGrant("A", leaseTTL))
	h.apply(EncodeLeaseGrant("B", 2*leaseTTL))
	h.leasePut("a1", "1", "A")
	h.leasePut("a2", "2", "A")
	h.leasePut("b1", "3", "B")
	h.put("plain", "4")
	h.apply(EncodeLeaseRevoke("B", LeasePrepare, 1))
	b := persist(t, h.f)

	f := New("shard-1")
	if err := restore(f, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(persist(t, f), b) {
		t.Fatal("the restored state writes another checkpoint")
	}
	if got := leaseKeys(t, f, "A"); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Fatalf("A's keys: %v", got)
	}
	if l, _ := f.Lease("B"); !l.Revoking || l.TTL != 2*leaseTTL {
		t.Fatalf("B restored as %+v", l)
	}
	if id, ok := f.Lock("b1"); !ok || id != LeaseLockPrefix+"B" {
		t.Fatalf("b1's lock not rebuilt: %q %v", id, ok)
	}
	// The restored replica goes on exactly like the original.
	cmds := [][]byte{EncodeLeaseRevoke("B", LeaseCommit, 0), EncodePut("a1", []byte("x"), Condition{})}
	for _, c := range cmds {
		h.apply(c)
		f.Apply(&raft.Log{Index: h.idx, Term: 1, Type: raft.LogCommand, Data: c})
	}
	if !bytes.Equal(persist(t, f), persist(t, h.f)) {
		t.Fatal("replicas diverged after restore")
	}
}
