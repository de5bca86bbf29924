package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/raftkvtest"
)

// saveBackup stages a backup on n and writes it to a file, as GET
// /v1/backup and `raftkv snapshot save` do.
func saveBackup(t *testing.T, n *raftkvtest.Node) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := n.PrepareBackup(ctx)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	defer w.Close()
	path := filepath.Join(t.TempDir(), "backup.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := w.Finish(f); err != nil {
		t.Fatalf("write backup: %v", err)
	}
	return path
}

// readRestored restores archive into a new one-node cluster and reads keys
// there in one transaction. Before anything else runs on it, the restored
// cluster must hold no open transaction: no lock, no staged part, no
// pending record.
func readRestored(t *testing.T, archive string, keys []string) map[string]int {
	t.Helper()
	rc := raftkvtest.RestoreCluster(t, archive)
	defer rc.Close()
	n := rc.Nodes[0]
	for i := 1; i <= 2; i++ {
		s, _ := n.TxnSummary(fmt.Sprintf("shard-%d", i))
		if s.LockCount > 0 || len(s.Staged) > 0 {
			t.Errorf("restored shard-%d starts with %d locks and %d staged parts", i, s.LockCount, len(s.Staged))
		}
		for _, r := range s.Records {
			if r.State == fsm.StatePending {
				t.Errorf("restored shard-%d starts with transaction %s pending", i, r.ID)
			}
		}
	}
	req := cluster.TxnRequest{}
	for _, k := range keys {
		req.Success = append(req.Success, fsm.Op{Kind: fsm.OpGet, Key: k})
	}
	out := map[string]int{}
	raftkvtest.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := n.Txn(ctx, req)
		if err != nil {
			return err
		}
		for i, r := range res.Results {
			v, err := strconv.Atoi(string(r.KV.Value))
			if err != nil || !r.Found {
				return fmt.Errorf("%s = %q (found %v)", keys[i], r.KV.Value, r.Found)
			}
			out[keys[i]] = v
		}
		return nil
	})
	return out
}

// waitResolved waits until transaction id is resolved on every participant.
func waitResolved(t *testing.T, n *raftkvtest.Node, id string) {
	t.Helper()
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rec, err := n.TxnRecord(ctx, id)
		if err != nil {
			return err
		}
		if !rec.Resolved {
			return fmt.Errorf("%s is %v, not yet resolved everywhere", id, rec.State)
		}
		return nil
	})
}

// heldCoordinator runs a transfer on n whose coordinator stops right
// before writing the decision, once every prepare has voted yes. decide
// lets it go on (true) or stop there for good (false); done reports the
// coordinator's answer.
type heldCoordinator struct {
	id     string
	decide chan bool
	done   chan error
}

var errStoppedByTest = errors.New("coordinator stopped by the test")

func holdBeforeDecision(t *testing.T, n *raftkvtest.Node, req cluster.TxnRequest) *heldCoordinator {
	t.Helper()
	h := &heldCoordinator{decide: make(chan bool), done: make(chan error, 1)}
	reached := make(chan string, 1)
	n.SetTxnHook(func(step cluster.TxnStep, id, _ string) error {
		if step != cluster.StepDecide {
			return nil
		}
		reached <- id
		if <-h.decide {
			return nil
		}
		return errStoppedByTest
	})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := n.Txn(ctx, req)
		h.done <- err
	}()
	select {
	case h.id = <-reached:
	case err := <-h.done:
		t.Fatalf("the transfer ended before its decision: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the transfer never reached its decision")
	}
	n.SetTxnHook(nil)
	return h
}

// TestBackupIsAConsistentCutOfCrossShardTransactions lands a transfer
// between two accounts on different shards at a chosen point between the
// backup's copy of shard-1 and its copy of shard-2 (the backup copies the
// groups in order: meta, shard-1, shard-2), then restores the backup and
// reads both accounts in one transaction: the sum must be what it was, and
// the restored cluster must start with every transaction finished.
//
// Without the cut, each of these restores a torn transfer: the copy of
// shard-1 lacks the transfer (or holds it prepared, then aborted by
// recovery after the restore) while the copy of shard-2 holds it applied.
func TestBackupIsAConsistentCutOfCrossShardTransactions(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	// Recovery must not finish the held transfers while the test holds them.
	cfg := cluster.DefaultTxnConfig()
	cfg.RecoveryTimeout = 30 * time.Second
	for _, n := range c.Nodes {
		if err := n.SetTxnConfig(cfg); err != nil {
			t.Fatal(err)
		}
	}
	a := keyOnShard(t, "acct", "shard-1", 2)
	b := keyOnShard(t, "acct", "shard-2", 2)
	keys := []string{a, b}
	backupNode, coordinator := c.Nodes[0], c.Nodes[1]

	type want struct {
		a, b     int
		decision string // the archive's decision for the transfer; "" for none
	}
	cases := []struct {
		name string
		// run starts the transfer before the backup (or not) and returns
		// what to do once shard-1 is copied, before shard-2 is, and after
		// the backup.
		run  func(t *testing.T) (id func() string, between, after func())
		want want
	}{
		{
			name: "the primary is copied before the prepare, the participant after the commit",
			run: func(t *testing.T) (func() string, func(), func()) {
				var id string
				return func() string { return id }, func() {
					id = mustTransfer(t, coordinator, transfer(a, b, 10, 100, 100))
					waitResolved(t, coordinator, id)
				}, func() {}
			},
			want: want{90, 110, backup.DecisionCommitted},
		},
		{
			name: "a participant is copied before the prepare, the primary after the commit",
			run: func(t *testing.T) (func() string, func(), func()) {
				var id string
				return func() string { return id }, func() {
					id = mustTransfer(t, coordinator, transfer(b, a, 10, 100, 100))
					waitResolved(t, coordinator, id)
				}, func() {}
			},
			want: want{110, 90, backup.DecisionCommitted},
		},
		{
			name: "the primary is copied pending, the participant after the commit",
			run: func(t *testing.T) (func() string, func(), func()) {
				h := holdBeforeDecision(t, coordinator, transfer(a, b, 10, 100, 100))
				return func() string { return h.id }, func() {
					h.decide <- true
					if err := <-h.done; err != nil {
						t.Errorf("held transfer: %v", err)
					}
					waitResolved(t, coordinator, h.id)
				}, func() {}
			},
			want: want{90, 110, backup.DecisionCommitted},
		},
		{
			name: "a participant is copied prepared, the primary after the commit",
			run: func(t *testing.T) (func() string, func(), func()) {
				h := holdBeforeDecision(t, coordinator, transfer(b, a, 10, 100, 100))
				return func() string { return h.id }, func() {
					h.decide <- true
					if err := <-h.done; err != nil {
						t.Errorf("held transfer: %v", err)
					}
					waitResolved(t, coordinator, h.id)
				}, func() {}
			},
			want: want{110, 90, backup.DecisionCommitted},
		},
		{
			// Last: the transfer stays locked in the live cluster.
			name: "prepared everywhere and still undecided when the backup ends",
			run: func(t *testing.T) (func() string, func(), func()) {
				h := holdBeforeDecision(t, coordinator, transfer(a, b, 10, 100, 100))
				return func() string { return h.id }, func() {}, func() {
					h.decide <- false
					if err := <-h.done; err == nil {
						t.Error("the stopped coordinator answered success")
					}
				}
			},
			want: want{100, 100, backup.DecisionAborted},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range keys {
				mustPut(t, backupNode, k, "100")
			}
			id, between, after := tc.run(t)
			backupNode.SetBackupHook(func(group string) {
				if group == "shard-1" {
					between()
				}
			})
			archive := saveBackup(t, backupNode)
			backupNode.SetBackupHook(nil)
			after()
			if t.Failed() {
				return
			}

			rep, err := backup.Inspect(archive)
			if err != nil {
				t.Fatalf("inspect: %v", err)
			}
			got := readRestored(t, archive, keys)
			if sum := got[a] + got[b]; sum != 200 || got[a] != tc.want.a || got[b] != tc.want.b {
				t.Errorf("restored %s=%d %s=%d (sum %d), want %d and %d (sum 200)", a, got[a], b, got[b], sum, tc.want.a, tc.want.b)
			}
			var decided string
			for _, d := range rep.Transactions {
				if d.ID == id() {
					decided = d.State
				}
			}
			if decided != tc.want.decision {
				t.Errorf("the archive decides %s as %q, want %q (transactions section: %+v)", id(), decided, tc.want.decision, rep.Transactions)
			}
		})
	}
}

// mustTransfer runs a cross-shard transfer that must commit and returns its id.
func mustTransfer(t *testing.T, n *raftkvtest.Node, req cluster.TxnRequest) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := n.Txn(ctx, req)
	if err != nil || !res.Succeeded || res.Mode != cluster.Mode2PC {
		t.Fatalf("transfer: %+v %v", res, err)
	}
	return res.ID
}

// A backup written before archives carried transaction decisions (format
// 1, backup/testdata/format1.tar: four accounts of 100 and one committed
// transfer of 10 from alice to bob) still restores, and its data reads back.
func TestRestoreOfAFormat1Backup(t *testing.T) {
	got := readRestored(t, filepath.Join("..", "backup", "testdata", "format1.tar"), []string{"alice", "bob", "carol", "dave"})
	if got["alice"] != 90 || got["bob"] != 110 || got["carol"] != 100 || got["dave"] != 100 {
		t.Fatalf("restored %v", got)
	}
}
