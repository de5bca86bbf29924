package fsm

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftkv/raftkv/registry"
	"github.com/raftkv/raftkv/snapshot"
)

// stateBytes is the checkpoint body of f's state without the header, so
// two states can be compared whatever their applied index.
func stateBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Kind: SnapshotKindV2, Group: f.group})
	if err == nil {
		err = writeState(w, &f.st)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		t.Fatalf("writing state: %v", err)
	}
	return buf.Bytes()
}

// busyShard is a shard with a key, a transaction prepared on it as the
// primary (locking "b"), one prepared for another primary (locking "c"),
// and a finished marker: something for every transaction command to touch.
func busyShard(t testing.TB) *harness {
	h := newHarness(t)
	h.put("a", "1")
	h.txn(CommandTxnPrepare, prepare("shard-1.p", "shard-1", 10, Txn{Success: []Op{putOp("b", "2")}}))
	h.txn(CommandTxnPrepare, prepare("shard-2.q", "shard-2", 10, Txn{Failure: []Op{delOp("c")}}))
	h.txn(CommandTxnResolve, TxnCmd{ID: "shard-3.r", Outcome: OutcomeAborted, Now: 5})
	h.apply(EncodeIdempotent("K", make([]byte, IdempotencyHashBytes), 6, EncodePut("z", []byte("1"), Condition{})))
	h.apply(EncodeLeaseGrant("shard-1.L", int64(time.Minute)))
	h.apply(EncodeLeaseGrant("shard-2.M", int64(time.Minute)))
	h.apply(EncodeLeasePut("l1", []byte("1"), Condition{}, "shard-1.L"))
	h.apply(EncodeLeasePut("m1", []byte("1"), Condition{}, "shard-2.M"))
	h.apply(EncodeLeaseRevoke("shard-2.M", LeasePrepare, 1))
	return h
}

// TestMalformedEntriesChangeNothing: entries no honest proposer writes, a
// registry command sent to a shard among them, are refused with an error
// result; the state is as before and the replica carries on.
func TestMalformedEntriesChangeNothing(t *testing.T) {
	noParts := TxnCmd{ID: "shard-1.x", Outcome: OutcomeAborted, Now: 5}
	badOutcome := EncodeTxn(CommandTxnResolve, TxnCmd{ID: "shard-2.q", Outcome: OutcomeAborted})
	badOutcome[len(badOutcome)-4] = 9 // the outcome byte, before the three empty body counts
	cases := []struct {
		name  string
		entry []byte
		want  error
	}{
		{"empty entry", nil, ErrMalformed},
		{"envelope version 0", []byte{0, byte(CommandPut)}, ErrMalformed},
		{"command type 0", []byte{CommandVersion, 0}, ErrMalformed},
		{"truncated put", EncodePut("a", []byte("9"), Condition{})[:5], ErrMalformed},
		{"put of an empty key", EncodePut("", []byte("9"), Condition{}), ErrInvalid},
		{"delete of an empty key", EncodeDelete("", Condition{}), ErrInvalid},
		{"txn writing an empty key", EncodeTxn(CommandTxn, TxnCmd{Body: Txn{Success: []Op{putOp("", "1")}}}), ErrInvalid},
		{"txn comparing an empty key", EncodeTxn(CommandTxn, TxnCmd{Body: Txn{Compares: []Compare{valueIs("", "1")}}}), ErrInvalid},
		{"prepare with an empty id", EncodeTxn(CommandTxnPrepare, prepare("", "shard-1", 10, Txn{Success: []Op{putOp("d", "1")}})), ErrInvalid},
		{"prepare without a primary", EncodeTxn(CommandTxnPrepare, prepare("shard-1.y", "", 10, Txn{Success: []Op{putOp("d", "1")}})), ErrInvalid},
		{"prepare without participants", EncodeTxn(CommandTxnPrepare, TxnCmd{ID: "shard-1.y", Primary: "shard-1", Now: 10, Deadline: 20}), ErrInvalid},
		{"prepare whose primary is not first", EncodeTxn(CommandTxnPrepare, TxnCmd{ID: "shard-1.y", Primary: "shard-1",
			Participants: []string{"shard-2", "shard-1"}, Now: 10, Deadline: 20}), ErrInvalid},
		{"decide for a made-up id without participants", EncodeTxn(CommandTxnDecide, noParts), ErrInvalid},
		{"decide with an unnamed participant", EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.x", Outcome: OutcomeAborted,
			Participants: []string{"shard-1", ""}}), ErrInvalid},
		{"decide without an outcome", EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.p", Participants: []string{"shard-1"}}), ErrInvalid},
		{"decide with an empty id", EncodeTxn(CommandTxnDecide, TxnCmd{Outcome: OutcomeAborted, Participants: []string{"shard-1"}}), ErrInvalid},
		{"resolve without an outcome", EncodeTxn(CommandTxnResolve, TxnCmd{ID: "shard-2.q", Now: 5}), ErrInvalid},
		{"resolve with an empty id", EncodeTxn(CommandTxnResolve, TxnCmd{Outcome: OutcomeAborted, Now: 5}), ErrInvalid},
		{"resolved with an empty id", EncodeTxn(CommandTxnResolved, TxnCmd{}), ErrInvalid},
		{"outcome out of range", badOutcome, ErrMalformed},
		{"registry init", registry.EncodeInit("cluster-1", 3), ErrMalformed},
		{"registry upsert-node", registry.EncodeUpsertNode(registry.Node{ID: "n1", HTTPAddr: "h:1", RaftAddr: "r:1"}), ErrMalformed},
		{"registry remove-node", registry.EncodeRemoveNode("n1"), ErrMalformed},
		{"registry noop", registry.EncodeNoop(), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := busyShard(t)
			before := stateBytes(t, h.f)
			r := h.apply(tc.entry)
			if !errors.Is(r.Err, tc.want) {
				t.Fatalf("Result.Err = %v, want %v", r.Err, tc.want)
			}
			if !bytes.Equal(stateBytes(t, h.f), before) {
				t.Fatal("a refused entry changed the state")
			}
			if h.f.AppliedIndex() != h.idx {
				t.Fatalf("AppliedIndex %d, want %d: a refused entry still counts as applied", h.f.AppliedIndex(), h.idx)
			}
			if r := h.put("e", "after"); r.Err != nil {
				t.Fatalf("put after the refused entry: %v", r.Err)
			}
		})
	}
}

// TestEntryOverTheLimitIsRefused: an entry that could produce a checkpoint
// record over snapshot.MaxRecordSize is refused whole.
func TestEntryOverTheLimitIsRefused(t *testing.T) {
	h := newHarness(t)
	r := h.put("big", strings.Repeat("v", MaxEntryBytes))
	if !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("Result.Err = %v, want ErrInvalid", r.Err)
	}
	if h.f.Len() != 0 {
		t.Fatal("the oversized put was stored")
	}
}

// TestNewerEntryHaltsTheNode: an entry type or envelope version this build
// does not know stops the replica with a message that says what to do.
func TestNewerEntryHaltsTheNode(t *testing.T) {
	cases := []struct {
		entry []byte
		want  string
	}{
		{[]byte{CommandVersion, 42, 1, 2, 3}, `fsm: group "shard-1": log entry type 42 at index 7 was written by a newer raftkv; upgrade this node`},
		{[]byte{CommandVersion + 1, byte(CommandPut)}, `fsm: group "shard-1": log entry envelope version 2 at index 7 was written by a newer raftkv; upgrade this node`},
	}
	for _, tc := range cases {
		got := func() (v any) {
			defer func() { v = recover() }()
			New("shard-1").Apply(&raft.Log{Index: 7, Term: 1, Type: raft.LogCommand, Data: tc.entry})
			return nil
		}()
		err, ok := got.(*NewerEntryError)
		if !ok {
			t.Fatalf("entry %x: panic value %#v, want a *NewerEntryError", tc.entry, got)
		}
		if err.Error() != tc.want {
			t.Errorf("message %q, want %q", err.Error(), tc.want)
		}
	}
}

// TestAcceptedStateRoundTrips: every odd command Apply accepts leaves a
// state that a checkpoint writes, restores and writes again byte for byte.
func TestAcceptedStateRoundTrips(t *testing.T) {
	h := busyShard(t)
	odd := [][]byte{
		EncodePut("empty value", nil, Condition{}),
		EncodePut("\xff\xfe not utf-8", []byte{0, 1, 2}, Condition{}),
		EncodePut(strings.Repeat("k", 10000), []byte("long key"), Condition{}),
		EncodeDelete("never there", Condition{}),
		EncodeTxn(CommandTxn, TxnCmd{}), // no compares, no ops
		EncodeTxn(CommandTxn, TxnCmd{Body: Txn{Success: []Op{putOp("twice", "1"), delOp("twice"), putOp("twice", "2"), putOp("twice", "3")}}}),
		// A part prepared for shards that do not include this one, with no keys.
		EncodeTxn(CommandTxnPrepare, TxnCmd{ID: "shard-9.empty", Primary: "shard-9", Participants: []string{"shard-9"}, Now: 11, Deadline: 12}),
		// Prepared after its deadline: votes no.
		EncodeTxn(CommandTxnPrepare, TxnCmd{ID: "shard-1.late", Primary: "shard-1", Participants: []string{"shard-1"}, Now: 50, Deadline: 40}),
		// Recovery aborting an id this shard never saw, and resolving one.
		EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.ghost", Outcome: OutcomeAborted, Now: 60, Participants: []string{"shard-1", "shard-5"}}),
		EncodeTxn(CommandTxnResolve, TxnCmd{ID: "shard-4.ghost", Outcome: OutcomeSuccess, Now: 61}),
		EncodeTxn(CommandTxnResolved, TxnCmd{ID: "no such record"}),
		EncodeTxn(CommandTxnDecide, TxnCmd{ID: "shard-1.p", Outcome: OutcomeFailure, Now: 70, Participants: []string{"shard-1"}}),
		EncodeTxn(CommandTxnResolved, TxnCmd{ID: "shard-1.p"}),
		EncodeTxn(CommandTxnGC, TxnCmd{Now: 80, Before: 6}),
		EncodeTxn(CommandTxnGC, TxnCmd{Now: 80, Before: 1<<63 - 1}),
		EncodeNoop(),
	}
	for i, e := range odd {
		if r := h.apply(e); errors.Is(r.Err, ErrMalformed) || errors.Is(r.Err, ErrInvalid) {
			t.Fatalf("odd command %d refused: %v", i, r.Err)
		}
		snap := persist(t, h.f)
		g := New("shard-1")
		if err := restore(g, snap); err != nil {
			t.Fatalf("after odd command %d: checkpoint does not restore: %v", i, err)
		}
		if !bytes.Equal(persist(t, g), snap) {
			t.Fatalf("after odd command %d: restored state persists differently", i)
		}
	}
}

// TestRegistryCommandsInAShardLogChangeNothing: the registry's own commands
// (roles and tokens) proposed into a shard are refused, not taken for
// entries from a newer raftkv, and fsm's numbering stays in step.
func TestRegistryCommandsInAShardLogChangeNothing(t *testing.T) {
	if firstRegistryOnly != CommandType(registry.CommandPutRole) || lastRegistryOnly != CommandType(registry.CommandRegisterNode) {
		t.Fatalf("fsm reserves %d..%d for the registry, which now uses %d..%d",
			firstRegistryOnly, lastRegistryOnly, registry.CommandPutRole, registry.CommandRegisterNode)
	}
	for _, entry := range [][]byte{
		registry.EncodePutRole(registry.Role{Name: "r"}),
		registry.EncodeDeleteRole("r"),
		registry.EncodePutToken(registry.Token{ID: "t", Hash: strings.Repeat("a", 64), Roles: []string{"r"}}),
		registry.EncodeDeleteToken("t"),
		registry.EncodeUpsertNode(registry.Node{ID: "n", HTTPAddr: "h:1", RaftAddr: "r:1", Incarnation: "i"}),
	} {
		if _, err := Decode(entry); !errors.Is(err, ErrMalformed) {
			t.Errorf("registry entry type %d in a shard: %v, want ErrMalformed", entry[1], err)
		}
	}
}
