package registry

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftkv/raftkv/fsm"
)

// settledRegistry is an initialised registry with two nodes.
func settledRegistry(t testing.TB) *harness {
	h := newHarness(t)
	h.apply(EncodeInit("c1", 3))
	h.apply(EncodeUpsertNode(Node{ID: "n1", HTTPAddr: "127.0.0.1:8001", RaftAddr: "127.0.0.1:9001"}))
	h.apply(EncodeUpsertNode(Node{ID: "n2", HTTPAddr: "127.0.0.1:8002", RaftAddr: "127.0.0.1:9002"}))
	return h
}

// stateBytes is f's checkpoint with the applied index left out, so states
// can be compared whatever entries were counted.
func stateBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, _ := f.Snapshot()
	s := snap.(*regSnapshot)
	s.hdr.Index, s.hdr.Term = 0, 0
	var buf bytes.Buffer
	if err := s.write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestShardCommandsInTheMetaLogChangeNothing: every shard command proposed
// into the meta group, and a few broken entries, get an error result; the
// registry is as before and keeps applying.
func TestShardCommandsInTheMetaLogChangeNothing(t *testing.T) {
	body := fsm.Txn{Success: []fsm.Op{{Kind: fsm.OpPut, Key: "a", Value: []byte("1")}}}
	cmd := fsm.TxnCmd{ID: "shard-1.x", Primary: "shard-1", Participants: []string{"shard-1"}, Now: 1, Deadline: 2,
		Outcome: fsm.OutcomeAborted, Body: body}
	entries := map[string][]byte{
		"put":          fsm.EncodePut("k", []byte("v"), fsm.Condition{}),
		"put, CAS":     fsm.EncodePut("k", []byte("v"), fsm.Condition{Kind: fsm.CondRevision, Revision: 7}),
		"delete":       fsm.EncodeDelete("k", fsm.Condition{}),
		"noop":         fsm.EncodeNoop(),
		"txn":          fsm.EncodeTxn(fsm.CommandTxn, cmd),
		"txn-prepare":  fsm.EncodeTxn(fsm.CommandTxnPrepare, cmd),
		"txn-decide":   fsm.EncodeTxn(fsm.CommandTxnDecide, cmd),
		"txn-resolve":  fsm.EncodeTxn(fsm.CommandTxnResolve, cmd),
		"txn-resolved": fsm.EncodeTxn(fsm.CommandTxnResolved, cmd),
		"txn-gc":       fsm.EncodeTxn(fsm.CommandTxnGC, cmd),
		"empty":        nil,
		"version 0":    {0, byte(CommandInit)},
		"type 0":       {CommandVersion, 0},
		"oversized":    EncodeUpsertNode(Node{ID: "n3", HTTPAddr: strings.Repeat("h", MaxEntryBytes)}),
	}
	for name, e := range entries {
		t.Run(name, func(t *testing.T) {
			h := settledRegistry(t)
			before := stateBytes(t, h.f)
			r := h.apply(e)
			if r.Changed || !refused(r.Err) {
				t.Fatalf("result %+v, want a refusal and no change", r)
			}
			if !bytes.Equal(stateBytes(t, h.f), before) {
				t.Fatal("a refused entry changed the registry")
			}
			if r := h.apply(EncodeRemoveNode("n2")); r.Err != nil || !r.Changed {
				t.Fatalf("remove after the refused entry: %+v", r)
			}
		})
	}
}

// refused reports whether err is one of the verdicts that leave the
// registry unchanged and let the replica carry on.
func refused(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrShardCommand) || errors.Is(err, ErrInvalid)
}

// TestNewerEntryHaltsTheNode: a type or envelope version no build has
// assigned yet stops the replica with a message that says what to do.
func TestNewerEntryHaltsTheNode(t *testing.T) {
	got := func() (v any) {
		defer func() { v = recover() }()
		New("meta").Apply(&raft.Log{Index: 12, Type: raft.LogCommand, Data: []byte{CommandVersion, 77}})
		return nil
	}()
	err, ok := got.(*NewerEntryError)
	if !ok {
		t.Fatalf("panic value %#v, want a *NewerEntryError", got)
	}
	want := `registry: group "meta": log entry type 77 at index 12 was written by a newer raftkv; upgrade this node`
	if err.Error() != want || !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("got %q, want %q wrapping ErrUnknownCommand", err.Error(), want)
	}
}

// TestShardOnlyTypesMatchTheFSM keeps the registry's list of the shard's
// command numbers in step with package fsm.
func TestShardOnlyTypesMatchTheFSM(t *testing.T) {
	if firstShardOnly != int(fsm.CommandTxn)+1 || lastShardOnly != int(fsm.CommandTxnGC) {
		t.Fatalf("registry refuses shard types %d..%d, fsm's transaction types beyond the registry's are %d..%d",
			firstShardOnly, lastShardOnly, fsm.CommandTxn+1, fsm.CommandTxnGC)
	}
	if CommandNoop != CommandType(fsm.CommandTxn) {
		t.Fatalf("the registry's last type %d no longer overlaps fsm.CommandTxn: revisit firstShardOnly", CommandNoop)
	}
}

// TestAcceptedStateRoundTrips: whatever the registry accepts, odd node ids
// and addresses included, a checkpoint writes and restores byte for byte.
func TestAcceptedStateRoundTrips(t *testing.T) {
	h := settledRegistry(t)
	for _, e := range [][]byte{
		EncodeUpsertNode(Node{ID: "\xff not utf-8", HTTPAddr: "", RaftAddr: "\x00"}),
		EncodeUpsertNode(Node{ID: strings.Repeat("n", 5000), HTTPAddr: strings.Repeat("h", 5000)}),
		EncodeUpsertNode(Node{ID: " "}),
		EncodeInit("c1", 3),
		EncodeRemoveNode("n1"),
		EncodeNoop(),
	} {
		if r := h.apply(e); r.Err != nil {
			t.Fatalf("refused: %v", r.Err)
		}
		snap := persist(t, h.f)
		g := New("meta")
		if err := restore(g, snap); err != nil {
			t.Fatalf("checkpoint does not restore: %v", err)
		}
		if !bytes.Equal(persist(t, g), snap) {
			t.Fatal("restored registry persists differently")
		}
	}
}
