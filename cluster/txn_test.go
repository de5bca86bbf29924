package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/raftkvtest"
)

// fastTxn shortens the recovery timers so crash tests finish quickly.
func fastTxn(t *testing.T, c *raftkvtest.Cluster) {
	t.Helper()
	cfg := cluster.DefaultTxnConfig()
	cfg.PrepareTimeout = 300 * time.Millisecond
	cfg.RecoveryTimeout = 800 * time.Millisecond
	cfg.RecoveryInterval = 100 * time.Millisecond
	cfg.Retention = 5 * time.Second
	for _, n := range c.Nodes {
		if err := n.SetTxnConfig(cfg); err != nil {
			t.Fatal(err)
		}
	}
}

func transfer(from, to string, amount int, fromBal, toBal int) cluster.TxnRequest {
	return cluster.TxnRequest{
		Compares: []fsm.Compare{{Key: from, Target: fsm.TargetValue, Op: fsm.OpEqual, Value: []byte(fmt.Sprint(fromBal))}},
		Success: []fsm.Op{
			{Kind: fsm.OpPut, Key: from, Value: []byte(fmt.Sprint(fromBal - amount))},
			{Kind: fsm.OpPut, Key: to, Value: []byte(fmt.Sprint(toBal + amount))},
			{Kind: fsm.OpGet, Key: to},
		},
		Failure: []fsm.Op{{Kind: fsm.OpGet, Key: from}},
	}
}

func mustGet(t *testing.T, n *raftkvtest.Node, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := n.Get(ctx, key, cluster.Linearizable)
	if errors.Is(err, cluster.ErrNotFound) {
		return "<absent>"
	}
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return string(res.KV.Value)
}

func mustPut(t *testing.T, n *raftkvtest.Node, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.Put(ctx, key, []byte(value), fsm.Condition{}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// noTxnState waits until no replica of any shard holds a lock, a staged
// part or an unresolved record.
func noTxnState(t *testing.T, c *raftkvtest.Cluster, shards int) {
	t.Helper()
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		for _, n := range c.Running() {
			for i := 1; i <= shards; i++ {
				s, _ := n.TxnSummary(fmt.Sprintf("shard-%d", i))
				if s.LockCount > 0 || len(s.Staged) > 0 {
					return fmt.Errorf("%s shard-%d: %d locks, %d staged", n.ID, i, s.LockCount, len(s.Staged))
				}
				for _, r := range s.Records {
					if !r.Resolved {
						return fmt.Errorf("%s shard-%d: record %s %v not resolved", n.ID, i, r.ID, r.State)
					}
				}
			}
		}
		return nil
	})
}

func TestTxnSingleShardAndCrossShard(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	fastTxn(t, c)
	a := keyOnShard(t, "acct", "shard-1", 2)
	b := keyOnShard(t, "acct", "shard-2", 2)
	a2 := keyOnShard(t, "other", "shard-1", 2)
	mustPut(t, c.Nodes[0], a, "100")
	mustPut(t, c.Nodes[0], b, "0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// One shard: one entry.
	res, err := c.Nodes[1].Txn(ctx, transfer(a, a2, 10, 100, 0))
	if err != nil || !res.Succeeded || res.Mode != cluster.ModeSingle {
		t.Fatalf("single-shard txn: %+v %v", res, err)
	}
	if got := string(res.Results[2].KV.Value); res.Results[2].Found || got != "" {
		t.Fatalf("get of %s must see the state before the txn (absent), got %+v", a2, res.Results[2])
	}

	// Two shards, through every node in turn.
	bal := 90
	for i := 0; i < 3; i++ {
		res, err = c.Nodes[i].Txn(ctx, transfer(a, b, 10, bal, 100-10-bal))
		if err != nil || !res.Succeeded || res.Mode != cluster.Mode2PC || len(res.Shards) != 2 {
			t.Fatalf("2pc txn via %d: %+v %v", i, res, err)
		}
		bal -= 10
		if got := mustGet(t, c.Nodes[(i+1)%3], b); got != fmt.Sprint(90-bal) {
			t.Fatalf("after commit %s = %s, want %d", b, got, 90-bal)
		}
		rec, err := c.Nodes[2].TxnRecord(ctx, res.ID)
		if err != nil || rec.State != fsm.StateCommitted || !rec.Succeeded {
			t.Fatalf("record %+v %v", rec, err)
		}
	}
	// A failing compare commits the failure branch.
	res, err = c.Nodes[0].Txn(ctx, transfer(a, b, 10, 999, 0))
	if err != nil || res.Succeeded || string(res.Results[0].KV.Value) != fmt.Sprint(bal) {
		t.Fatalf("failure branch: %+v %v", res, err)
	}
	if _, err := c.Nodes[0].TxnRecord(ctx, "single.00"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("record of a single-shard id: %v", err)
	}
	noTxnState(t, c, 2)
}

// TestTxnCoordinatorCrashAtEachStep stops the coordinator (test hook) at
// every step of the protocol. Afterwards the record is decided, every
// participant agrees with it, and no lock remains.
//
// Histories (P = primary shard-1, Q = shard-2):
//   - before Q's prepare: P prepared, record pending → recovery aborts.
//   - before P's prepare: Q locked, no record → recovery writes an aborted
//     record on P; the late prepare of P would vote no.
//   - before the decision: both prepared, record pending → aborted.
//   - before Q's resolve: committed on P only → Q applies it; a read on Q
//     returns the new value at once (never the old one after the commit).
//
// recoveryNoted reports whether some node's status lists a recovery of id.
func recoveryNoted(c *raftkvtest.Cluster, id string) bool {
	for _, n := range c.Running() {
		for _, ev := range n.Status().RecentTxnRecoveries {
			if ev.Txn == id && ev.Error == "" {
				return true
			}
		}
	}
	return false
}

func TestTxnCoordinatorCrashAtEachStep(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	fastTxn(t, c)
	a := keyOnShard(t, "acct", "shard-1", 2)
	b := keyOnShard(t, "acct", "shard-2", 2)
	cases := []struct {
		name      string
		step      cluster.TxnStep
		shard     string
		committed bool
	}{
		{"before prepare of participant", cluster.StepPrepare, "shard-2", false},
		{"before prepare of primary", cluster.StepPrepare, "shard-1", false},
		{"before decision", cluster.StepDecide, "", false},
		{"before resolve", cluster.StepResolve, "shard-2", true},
	}
	bal := 100
	mustPut(t, c.Nodes[0], a, fmt.Sprint(bal))
	mustPut(t, c.Nodes[0], b, fmt.Sprint(100-bal))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			coord := c.Nodes[1]
			var id string
			coord.SetTxnHook(func(step cluster.TxnStep, txn, shard string) error {
				if step == cluster.StepPrepare && shard == "shard-1" {
					id = txn // prepares are started from the caller's goroutine
				}
				if step == tc.step && (tc.shard == "" || shard == tc.shard) {
					return errors.New("crash")
				}
				return nil
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := coord.Txn(ctx, transfer(a, b, 10, bal, 100-bal))
			// The hook stays until the end: resolves run in the background.
			defer coord.SetTxnHook(nil)
			if tc.committed {
				if err != nil {
					t.Fatalf("commit point passed, yet error %v", err)
				}
				if s, _ := c.Nodes[c.Leader("shard-2")].TxnSummary("shard-2"); len(s.Staged) != 1 {
					t.Fatalf("shard-2 should still hold the unresolved part, has %d", len(s.Staged))
				}
				// The trap: Q is not resolved, yet the read must see the commit.
				if got := mustGet(t, c.Nodes[2], b); got != fmt.Sprint(100-bal+10) {
					t.Fatalf("read after commit on unresolved shard: %s = %s", b, got)
				}
				bal -= 10
			} else {
				if !errors.Is(err, cluster.ErrIndeterminate) {
					t.Fatalf("want an indeterminate error from the stopped coordinator, got %v", err)
				}
				// While the transaction is undecided, reads see the last decided value.
				if got := mustGet(t, c.Nodes[0], a); got != fmt.Sprint(bal) {
					t.Fatalf("read of locked key: %s = %s, want %d", a, got, bal)
				}
			}
			noTxnState(t, c, 2)
			if tc.step == cluster.StepDecide || tc.shard == "shard-2" {
				// The primary's record, pending or decided, was left for
				// recovery to finish, and the status says it did.
				if !recoveryNoted(c, id) {
					t.Errorf("no node lists %s among its recent transaction recoveries", id)
				}
			}
			rec, err := c.Nodes[0].TxnRecord(ctx, id)
			switch {
			case err != nil && !tc.committed && errors.Is(err, cluster.ErrNotFound):
				// Stopped before any prepare reached the primary (prepares
				// run in parallel, so the participant's may not have been
				// sent either): no record was ever written, which is an
				// abort. Recovery may still write one if a lock was left.
				rec.State = fsm.StateAborted
			case err != nil:
				t.Fatalf("record %s: %v", id, err)
			}
			if want := map[bool]fsm.TxnState{true: fsm.StateCommitted, false: fsm.StateAborted}[tc.committed]; rec.State != want {
				t.Fatalf("record %s is %v, want %v", id, rec.State, want)
			}
			for i := range c.Nodes {
				if ga, gb := mustGet(t, c.Nodes[i], a), mustGet(t, c.Nodes[i], b); ga != fmt.Sprint(bal) || gb != fmt.Sprint(100-bal) {
					t.Fatalf("via node%d: %s=%s %s=%s, want %d and %d", i+1, a, ga, b, gb, bal, 100-bal)
				}
			}
			// The keys are free again.
			if _, err := c.Nodes[0].Txn(ctx, transfer(a, b, 0, bal, 100-bal)); err != nil {
				t.Fatalf("txn after recovery: %v", err)
			}
		})
	}
}

// TestTxnLockedWrites: a plain write to a key held by an undecided
// transaction waits; it goes through once recovery aborts the transaction
// (or answers 409 if its attempts run out first), and never applies while
// the lock is held.
func TestTxnLockedWrites(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	fastTxn(t, c)
	a := keyOnShard(t, "acct", "shard-1", 2)
	b := keyOnShard(t, "acct", "shard-2", 2)
	mustPut(t, c.Nodes[0], a, "1")
	c.Nodes[0].SetTxnHook(func(step cluster.TxnStep, _, _ string) error {
		if step == cluster.StepDecide {
			return errors.New("crash")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Nodes[0].Txn(ctx, transfer(a, b, 1, 1, 0)); err == nil {
		t.Fatal("stopped coordinator reported success")
	}
	c.Nodes[0].SetTxnHook(nil)
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		_, err := c.Nodes[1].Put(ctx, b, []byte("direct"), fsm.Condition{})
		if errors.Is(err, cluster.ErrConflict) {
			return err
		}
		if err != nil {
			t.Fatalf("put on locked key: %v", err)
		}
		return nil
	})
	if got := mustGet(t, c.Nodes[2], b); got != "direct" {
		t.Fatalf("%s = %s", b, got)
	}
	if got := mustGet(t, c.Nodes[2], a); got != "1" {
		t.Fatalf("aborted transaction changed %s to %s", a, got)
	}
	noTxnState(t, c, 2)
}

// TestTxnPrimaryLeaderCrash: the coordinator stops before the decision and
// the primary's leader dies too. The new leader restores the record and
// locks from the log and recovery aborts the transaction.
func TestTxnPrimaryLeaderCrash(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	fastTxn(t, c)
	a := keyOnShard(t, "acct", "shard-1", 2)
	b := keyOnShard(t, "acct", "shard-2", 2)
	leader := c.Leader("shard-1")
	coord := (leader + 1) % 3
	c.Nodes[coord].SetTxnHook(func(step cluster.TxnStep, _, _ string) error {
		if step == cluster.StepDecide {
			return errors.New("crash")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Nodes[coord].Txn(ctx, transfer(a, b, 0, 0, 0)); err == nil {
		t.Fatal("stopped coordinator reported success")
	}
	c.Nodes[coord].SetTxnHook(nil)
	c.Stop(leader)
	noTxnState(t, c, 2)
	c.Restart(leader)
	fastTxn(t, c)
	c.WaitReady()
	noTxnState(t, c, 2)
}

// TestTxnLeaderChangesAfterTheDecision: the coordinator decides a transfer
// (primary shard-1, participant shard-2) and dies before resolving; then the
// leader of the primary, or of the participant, dies too. The decision is in
// raft, so the new leaders finish the transaction: no read ever returns the
// old balances, and no lock remains.
func TestTxnLeaderChangesAfterTheDecision(t *testing.T) {
	for _, victimShard := range []string{"shard-1", "shard-2"} {
		t.Run("leader of "+victimShard+" dies", func(t *testing.T) {
			c := raftkvtest.NewCluster(t, 3, 2)
			fastTxn(t, c)
			a := keyOnShard(t, "acct-a", "shard-1", 2)
			b := keyOnShard(t, "acct-b", "shard-2", 2)
			mustPut(t, c.Nodes[0], a, "100")
			mustPut(t, c.Nodes[0], b, "0")
			victim := c.Leader(victimShard)
			coord := (victim + 1) % 3
			c.Nodes[coord].SetTxnHook(func(step cluster.TxnStep, _, _ string) error {
				if step == cluster.StepResolve {
					return errors.New("coordinator dies before resolving")
				}
				return nil
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := c.Nodes[coord].Txn(ctx, transfer(a, b, 30, 100, 0))
			if err == nil && !res.Succeeded {
				t.Fatalf("transfer took the failure branch: %+v", res)
			}
			c.Nodes[coord].SetTxnHook(nil)
			c.Stop(victim)
			survivor := c.Nodes[(victim+2)%3]
			if got := mustGet(t, survivor, b); got != "30" {
				t.Fatalf("%s after the decision = %q, want 30", b, got)
			}
			if got := mustGet(t, survivor, a); got != "70" {
				t.Fatalf("%s after the decision = %q, want 70", a, got)
			}
			noTxnState(t, c, 2)
			c.Restart(victim)
			fastTxn(t, c)
			c.WaitReady()
			noTxnState(t, c, 2)
			if got := mustGet(t, c.Nodes[victim], b); got != "30" {
				t.Fatalf("%s via the restarted node = %q, want 30", b, got)
			}
		})
	}
}
