package cluster

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/fsm"
)

// primaryCheckpoint is the checkpoint of shard-1 holding transaction
// shard-1.aa prepared (a put of k), and decided with outcome o if o != 0.
func primaryCheckpoint(t *testing.T, o fsm.Outcome) []byte {
	t.Helper()
	f := fsm.New("shard-1")
	cmds := [][]byte{fsm.EncodeTxn(fsm.CommandTxnPrepare, fsm.TxnCmd{ID: "shard-1.aa", Primary: "shard-1",
		Participants: []string{"shard-1", "shard-2"}, Now: 1, Deadline: 10,
		Body: fsm.Txn{Success: []fsm.Op{{Kind: fsm.OpPut, Key: "k", Value: []byte("v")}}}})}
	if o != 0 {
		cmds = append(cmds, fsm.EncodeTxn(fsm.CommandTxnDecide, fsm.TxnCmd{ID: "shard-1.aa", Outcome: o,
			Participants: []string{"shard-1", "shard-2"}, Now: 2}))
	}
	for i, c := range cmds {
		if r := f.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: c}).(*fsm.Result); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	snap, _ := f.Snapshot()
	var buf bytes.Buffer
	if err := snap.Persist(&writerSink{Writer: &buf}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Restore commits a pending primary the backup decided committed: the
// write lands, the lock goes, the record is committed and resolved.
func TestSettledCheckpointCommitsAPendingPrimary(t *testing.T) {
	d := backup.Decision{ID: "shard-1.aa", Primary: "shard-1", State: backup.DecisionCommitted, Succeeded: true}
	f, err := settledCheckpoint("shard-1", 1, bytes.NewReader(primaryCheckpoint(t, 0)), []backup.Decision{d})
	if err != nil {
		t.Fatal(err)
	}
	kv, ok := f.Get("k")
	rec, _ := f.Record("shard-1.aa")
	if !ok || string(kv.Value) != "v" || rec.State != fsm.StateCommitted || !rec.Resolved || f.Transactions().LockCount != 0 {
		t.Fatalf("k=%+v %v, record %+v, summary %+v", kv, ok, rec, f.Transactions())
	}
}

// A decision that contradicts a record already decided in the checkpoint
// cannot come from a backup: restore refuses the archive as corrupt.
func TestSettledCheckpointRefusesADecisionAgainstTheRecord(t *testing.T) {
	d := backup.Decision{ID: "shard-1.aa", Primary: "shard-1", State: backup.DecisionAborted}
	_, err := settledCheckpoint("shard-1", 1, bytes.NewReader(primaryCheckpoint(t, fsm.OutcomeSuccess)), []backup.Decision{d})
	if !errors.Is(err, backup.ErrCorrupt) {
		t.Fatalf("aborting a committed record: %v, want ErrCorrupt", err)
	}
}
