package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/snapshot"
)

// soloNode starts a single-node cluster of two shards on in-memory
// transports and waits until it leads every group. The operation functions
// under test are unexported, so this test lives inside the package and
// cannot use raftkvtest, which imports it.
func soloNode(t *testing.T) *Node { return soloNodeWith(t, nil) }

// soloNodeWith is soloNode with a hook that adjusts the config.
func soloNodeWith(t *testing.T, tune func(*Config)) *Node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.RaftAddr, cfg.HTTPAddr, cfg.Shards = "solo", t.TempDir(), "solo:7000", "127.0.0.1:1", 2
	cfg.BalanceInterval = 0
	cfg.NewTransport = func(string) (raft.Transport, error) {
		_, tr := raft.NewInmemTransport("solo:7000")
		return tr, nil
	}
	cfg.NewRPCLayer = func() (raft.StreamLayer, error) { return newLoopbackLayer() }
	if tune != nil {
		tune(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	for _, name := range n.order {
		g := n.groups[name]
		select {
		case <-g.raft.LeaderCh():
		case <-ctx.Done():
		}
		if err := g.readBarrier(ctx); err != nil {
			t.Fatalf("%s never became ready: %v", name, err)
		}
	}
	return n
}

// keyOn returns a key that shard owns.
func keyOn(t *testing.T, n *Node, shard string) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		k := fmt.Sprintf("k-%d", i)
		if n.ShardOf(k) == shard {
			return k
		}
	}
	t.Fatalf("no key found on %s", shard)
	return ""
}

// TestLeaderOperationsRefuseBadArguments: every operation a node runs for
// another refuses arguments it could not have been sent by a node of this
// cluster, with ErrBadRequest (ErrTooLarge for sizes), and proposes
// nothing: the group's log does not grow.
func TestLeaderOperationsRefuseBadArguments(t *testing.T) {
	n := soloNode(t)
	g1, g2 := n.groups["shard-1"], n.groups["shard-2"]
	mine, theirs := keyOn(t, n, "shard-1"), keyOn(t, n, "shard-2")
	id := newTxnID("shard-1")
	body := fsm.Txn{Success: []fsm.Op{{Kind: fsm.OpPut, Key: mine, Value: []byte("v")}}}
	prep := func(edit func(*fsm.TxnCmd)) prepareArgs {
		c := fsm.TxnCmd{ID: id, Primary: "shard-1", Participants: []string{"shard-1", "shard-2"}, Deadline: n.leaderNow() + int64(time.Minute), Body: body}
		edit(&c)
		return prepareArgs{Cmd: c}
	}
	decide := func(id string, o fsm.Outcome, ps ...string) decideArgs {
		return decideArgs{ID: id, Outcome: o, Participants: ps}
	}
	ctx := context.Background()
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"put of an empty key", func() error { _, err := n.putLocal(ctx, g1, putArgs{Key: ""}); return err }, ErrBadRequest},
		{"put of a key over the limit", func() error {
			_, err := n.putLocal(ctx, g1, putArgs{Key: strings.Repeat("k", MaxKeyBytes+1)})
			return err
		}, ErrBadRequest},
		{"put of a key that is not UTF-8", func() error { _, err := n.putLocal(ctx, g1, putArgs{Key: "\xff"}); return err }, ErrBadRequest},
		{"put of another shard's key", func() error { _, err := n.putLocal(ctx, g1, putArgs{Key: theirs}); return err }, ErrBadRequest},
		{"put with an undefined condition", func() error {
			_, err := n.putLocal(ctx, g1, putArgs{Key: mine, Cond: fsm.Condition{Kind: 7}})
			return err
		}, ErrBadRequest},
		{"put of a value over the limit", func() error {
			_, err := n.putLocal(ctx, g1, putArgs{Key: mine, Value: make([]byte, n.cfg.MaxValueBytes+1)})
			return err
		}, ErrTooLarge},
		{"delete of an empty key", func() error { _, err := n.deleteLocal(ctx, g1, keyArgs{}); return err }, ErrBadRequest},
		{"delete with an undefined condition", func() error {
			_, err := n.deleteLocal(ctx, g1, keyArgs{Key: mine, Cond: fsm.Condition{Kind: 9}})
			return err
		}, ErrBadRequest},
		{"get of another shard's key", func() error { _, err := n.getLocal(ctx, g1, keyArgs{Key: theirs}); return err }, ErrBadRequest},
		{"get of an empty key", func() error { _, err := n.getLocal(ctx, g1, keyArgs{}); return err }, ErrBadRequest},
		{"list without a limit", func() error { _, err := n.listLocal(ctx, g1, listArgs{Limit: 0}); return err }, ErrBadRequest},
		{"list with a negative limit", func() error { _, err := n.listLocal(ctx, g1, listArgs{Limit: -1}); return err }, ErrBadRequest},
		{"list over the page limit", func() error { _, err := n.listLocal(ctx, g1, listArgs{Limit: MaxListLimit + 1}); return err }, ErrBadRequest},
		{"list with a prefix over the key limit", func() error {
			_, err := n.listLocal(ctx, g1, listArgs{Prefix: strings.Repeat("p", MaxKeyBytes+1), Limit: 1})
			return err
		}, ErrBadRequest},
		{"txn with no ops", func() error { _, err := n.txnLocal(ctx, g1, txnArgs{}); return err }, ErrBadRequest},
		{"txn with an undefined op", func() error {
			_, err := n.txnLocal(ctx, g1, txnArgs{Body: fsm.Txn{Success: []fsm.Op{{Kind: 9, Key: mine}}}})
			return err
		}, ErrBadRequest},
		{"txn with an undefined compare", func() error {
			_, err := n.txnLocal(ctx, g1, txnArgs{Body: fsm.Txn{Compares: []fsm.Compare{{Key: mine}}}})
			return err
		}, ErrBadRequest},
		{"txn on another shard's key", func() error {
			_, err := n.txnLocal(ctx, g1, txnArgs{Body: fsm.Txn{Success: []fsm.Op{{Kind: fsm.OpGet, Key: theirs}}}})
			return err
		}, ErrBadRequest},
		{"prepare with an empty id", func() error {
			_, err := n.prepareLocal(ctx, g1, prep(func(c *fsm.TxnCmd) { c.ID = "" }))
			return err
		}, ErrBadRequest},
		{"prepare with a made-up id", func() error {
			_, err := n.prepareLocal(ctx, g1, prep(func(c *fsm.TxnCmd) { c.ID = "made-up" }))
			return err
		}, ErrBadRequest},
		{"prepare whose primary is not its id's", func() error {
			_, err := n.prepareLocal(ctx, g1, prep(func(c *fsm.TxnCmd) { c.Primary = "shard-2" }))
			return err
		}, ErrBadRequest},
		{"prepare without participants", func() error {
			_, err := n.prepareLocal(ctx, g1, prep(func(c *fsm.TxnCmd) { c.Participants = nil }))
			return err
		}, ErrBadRequest},
		{"prepare with the primary not first", func() error {
			_, err := n.prepareLocal(ctx, g1, prep(func(c *fsm.TxnCmd) { c.Participants = []string{"shard-2", "shard-1"} }))
			return err
		}, ErrBadRequest},
		{"prepare with an unknown participant", func() error {
			_, err := n.prepareLocal(ctx, g1, prep(func(c *fsm.TxnCmd) { c.Participants = []string{"shard-1", "shard-9"} }))
			return err
		}, ErrBadRequest},
		{"prepare with a participant twice", func() error {
			_, err := n.prepareLocal(ctx, g1, prep(func(c *fsm.TxnCmd) { c.Participants = []string{"shard-1", "shard-1"} }))
			return err
		}, ErrBadRequest},
		{"prepare on a shard that is not a participant", func() error {
			_, err := n.prepareLocal(ctx, g2, prep(func(c *fsm.TxnCmd) { c.Participants = []string{"shard-1"} }))
			return err
		}, ErrBadRequest},
		{"prepare with a negative time to live", func() error {
			_, err := n.prepareLocal(ctx, g1, prepareArgs{Cmd: prep(func(*fsm.TxnCmd) {}).Cmd, TTL: -time.Second})
			return err
		}, ErrBadRequest},
		{"prepare of another shard's key", func() error {
			_, err := n.prepareLocal(ctx, g2, prep(func(*fsm.TxnCmd) {}))
			return err
		}, ErrBadRequest},
		{"decide for a made-up id", func() error {
			_, err := n.decideLocal(ctx, g1, decide("made-up", fsm.OutcomeAborted, "shard-1"))
			return err
		}, ErrBadRequest},
		{"decide on a shard that is not the primary", func() error {
			_, err := n.decideLocal(ctx, g2, decide(id, fsm.OutcomeAborted, "shard-1"))
			return err
		}, ErrBadRequest},
		{"decide without participants", func() error {
			_, err := n.decideLocal(ctx, g1, decide(id, fsm.OutcomeAborted))
			return err
		}, ErrBadRequest},
		{"decide with the primary not first", func() error {
			_, err := n.decideLocal(ctx, g1, decide(id, fsm.OutcomeAborted, "shard-2", "shard-1"))
			return err
		}, ErrBadRequest},
		{"decide without an outcome", func() error {
			_, err := n.decideLocal(ctx, g1, decide(id, 0, "shard-1"))
			return err
		}, ErrBadRequest},
		{"decide with an undefined outcome", func() error {
			_, err := n.decideLocal(ctx, g1, decide(id, 7, "shard-1"))
			return err
		}, ErrBadRequest},
		{"resolve with an empty id", func() error {
			_, err := n.resolveLocal(ctx, g2, decide("", fsm.OutcomeAborted))
			return err
		}, ErrBadRequest},
		{"resolve with an undefined outcome", func() error {
			_, err := n.resolveLocal(ctx, g2, decide(id, 200))
			return err
		}, ErrBadRequest},
		{"resolve without an outcome", func() error {
			_, err := n.resolveLocal(ctx, g2, decide(id, 0))
			return err
		}, ErrBadRequest},
		{"mark resolved with an empty id", func() error { _, err := n.markResolvedLocal(ctx, g1, idArgs{}); return err }, ErrBadRequest},
		{"mark resolved off the primary", func() error { _, err := n.markResolvedLocal(ctx, g2, idArgs{ID: id}); return err }, ErrBadRequest},
		{"record with an empty id", func() error { _, err := n.recordLocal(ctx, g1, idArgs{}); return err }, ErrBadRequest},
		{"record with an id over the limit", func() error {
			_, err := n.recordLocal(ctx, g1, idArgs{ID: strings.Repeat("i", MaxTxnIDBytes+1)})
			return err
		}, ErrBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			last1, last2 := g1.raft.LastIndex(), g2.raft.LastIndex()
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if g1.raft.LastIndex() != last1 || g2.raft.LastIndex() != last2 {
				t.Fatal("a refused operation proposed an entry")
			}
		})
	}
}

// TestPrepareProposesOnlyTheFieldsItUses: a forwarded prepare carrying an
// outcome no encoder accepts still prepares; the stray field is dropped
// rather than handed to fsm.EncodeTxn, which would panic on it.
func TestPrepareProposesOnlyTheFieldsItUses(t *testing.T) {
	n := soloNode(t)
	mine := keyOn(t, n, "shard-1")
	id := newTxnID("shard-1")
	cmd := fsm.TxnCmd{ID: id, Primary: "shard-1", Participants: []string{"shard-1"}, Outcome: 99, Before: -5,
		Deadline: n.leaderNow() + int64(time.Minute), Body: fsm.Txn{Success: []fsm.Op{{Kind: fsm.OpPut, Key: mine, Value: []byte("v")}}}}
	v, err := n.prepareLocal(context.Background(), n.groups["shard-1"], prepareArgs{Cmd: cmd})
	if err != nil || v.Vote != VoteYes {
		t.Fatalf("prepare: %+v, %v", v, err)
	}
	rec, err := n.decideLocal(context.Background(), n.groups["shard-1"], decideArgs{ID: id, Outcome: fsm.OutcomeSuccess, Participants: []string{"shard-1"}})
	if err != nil || rec.State != fsm.StateCommitted {
		t.Fatalf("decide: %+v, %v", rec, err)
	}
}

// legacyCheckpoint is a shard checkpoint holding one aborted, unresolved
// record without participants: what a txn-decide for a made-up id left
// behind before entries were checked. The record layout is fsm's
// (snapshot_txn.go, tag 3).
func legacyCheckpoint(t *testing.T, group, id string, index, term uint64) []byte {
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Kind: fsm.SnapshotKindV2, Group: group, Index: index, Term: term})
	if err != nil {
		t.Fatal(err)
	}
	rec := []byte{3}
	rec = binary.AppendUvarint(rec, uint64(len(id)))
	rec = append(rec, id...)
	rec = append(rec, byte(fsm.StateAborted), 0) // state, succeeded
	rec = append(rec, 0, 1, 1, 0)                // no participants, started 1, decided 1, not resolved
	if err := w.WriteRecord(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRecoveryFinishesWhatNoCoordinatorWrote: records and staged parts
// that no coordinator of this cluster could have written (a record with
// no participants, a prepare under a made-up id) are finished on their
// shard by one recovery round, where they used to crash it.
func TestRecoveryFinishesWhatNoCoordinatorWrote(t *testing.T) {
	clock := &stepClock{}
	n := soloNodeWith(t, func(c *Config) { c.Clock = clock })
	g := n.groups["shard-1"]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// An older build accepted a decide for a made-up id without
	// participants; its record comes back from the checkpoint.
	if err := g.kv.Restore(io.NopCloser(bytes.NewReader(legacyCheckpoint(t, g.name, "shard-1.legacy", g.kv.AppliedIndex(), 1)))); err != nil {
		t.Fatal(err)
	}
	// A forged prepare under an id that names no shard, straight into the
	// log (the operation checks would refuse it), with an ancient time.
	mine := keyOn(t, n, "shard-1")
	forged := fsm.TxnCmd{ID: "made-up", Primary: "shard-1", Participants: []string{"shard-1"}, Now: 1, Deadline: 2,
		Body: fsm.Txn{Success: []fsm.Op{{Kind: fsm.OpPut, Key: mine, Value: []byte("x")}}}}
	if _, err := g.apply(ctx, fsm.EncodeTxn(fsm.CommandTxnPrepare, forged)); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.kv.Lock(mine); !ok {
		t.Fatal("the forged prepare did not lock its key")
	}

	// This node inherits both (recovery dates what it finds when it takes
	// a shard over from that moment, by its own clock) and then waits
	// out the recovery timeout.
	if _, err := n.txnView(ctx, g); err != nil {
		t.Fatal(err)
	}
	cfg := n.txnConfig()
	cfg.RecoveryTimeout = time.Second
	clock.step(2 * cfg.RecoveryTimeout)
	n.recoverShard(g, cfg)

	if rec, ok := g.kv.Record("shard-1.legacy"); !ok || !rec.Resolved {
		t.Fatalf("legacy record not finished: %+v (found %v)", rec, ok)
	}
	if rec, ok := g.kv.Record("made-up"); !ok || rec.State != fsm.StateAborted || !rec.Resolved {
		t.Fatalf("forged pending record not aborted and resolved: %+v (found %v)", rec, ok)
	}
	if _, ok := g.kv.Lock(mine); ok {
		t.Fatal("the forged prepare still locks its key")
	}
	if _, err := n.putLocal(ctx, g, putArgs{Key: mine, Value: []byte("free")}); err != nil {
		t.Fatalf("put on the released key: %v", err)
	}
}

// TestAPrepareIsDatedByTheParticipantsClock: a prepare that carries a time
// to live is accepted for that long by this leader's clock, whatever
// absolute deadline (the coordinator's clock) it also carries; one from a
// coordinator from before TTLs (none) is held to its absolute deadline.
func TestAPrepareIsDatedByTheParticipantsClock(t *testing.T) {
	n := soloNode(t)
	g := n.groups["shard-1"]
	ctx := context.Background()
	prepare := func(deadline int64, ttl time.Duration) prepareReply {
		t.Helper()
		cmd := fsm.TxnCmd{ID: newTxnID("shard-1"), Primary: "shard-1", Participants: []string{"shard-1"}, Deadline: deadline,
			Body: fsm.Txn{Success: []fsm.Op{{Kind: fsm.OpPut, Key: keyOn(t, n, "shard-1"), Value: []byte("v")}}}}
		v, err := n.prepareLocal(ctx, g, prepareArgs{Cmd: cmd, TTL: ttl})
		if err != nil {
			t.Fatalf("prepare: %v", err)
		}
		if _, err := n.decideLocal(ctx, g, decideArgs{ID: cmd.ID, Outcome: fsm.OutcomeAborted, Participants: []string{"shard-1"}}); err != nil {
			t.Fatalf("abort: %v", err)
		}
		return v
	}
	ancient := n.leaderNow() - int64(time.Hour) // a coordinator an hour behind
	if v := prepare(ancient, time.Minute); v.Vote != VoteYes {
		t.Fatalf("prepare with a minute to live and an ancient absolute deadline voted %q", v.Vote)
	}
	if v := prepare(ancient, 0); v.Vote != VoteFinished {
		t.Fatalf("prepare without a time to live, past its absolute deadline, voted %q", v.Vote)
	}
	if v := prepare(n.leaderNow()+int64(time.Minute), 0); v.Vote != VoteYes {
		t.Fatalf("prepare without a time to live, before its absolute deadline, voted %q", v.Vote)
	}
}
