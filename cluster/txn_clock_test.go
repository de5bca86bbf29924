package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/raftkvtest"
)

// skew is how far each node's clock is off in the skewed clusters: node1
// keeps the machine's time, node2 runs 30 s ahead, node3 30 s behind. 30 s
// is well past every transaction timer below, so a node that compared its
// clock with another's would act at once.
var skew = map[string]time.Duration{"node1": 0, "node2": 30 * time.Second, "node3": -30 * time.Second}

const (
	plainNode  = 0 // node1, on the machine's clock
	aheadNode  = 1 // node2
	behindNode = 2 // node3
)

// skewedCluster starts three nodes on the clocks of skew, with txn as
// every node's transaction settings.
func skewedCluster(t *testing.T, shards int, txn cluster.TxnConfig) *raftkvtest.Cluster {
	t.Helper()
	return raftkvtest.NewClusterWith(t, 3, shards, func(cfg *cluster.Config) {
		cfg.Clock = raftkvtest.SkewedClock(skew[cfg.NodeID])
		cfg.Txn = txn
	})
}

// waitRecoveryRuns waits until node i has made at least two more recovery
// passes over shard as its leader than it had made before: long enough for
// a leader that misjudged a transaction's age to have acted on it.
func waitRecoveryRuns(t *testing.T, c *raftkvtest.Cluster, i int, shard string, before uint64) {
	t.Helper()
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		if got := c.Nodes[i].TxnRecoveryRuns(shard); got < before+2 {
			return fmt.Errorf("%s made %d recovery passes over %s, want %d", c.Nodes[i].ID, got, shard, before+2)
		}
		return nil
	})
}

// TestCrossShardTxnsCommitWhicheverNodesClockIsOff: the primary's leader
// runs 30 s ahead, the participant's 30 s behind, and every node in turn
// coordinates a transfer. Each commits at the first attempt. (A prepare
// deadline taken from the coordinator's clock and checked against a
// participant's made every prepare on the node ahead vote "finished", and
// the transfer end 409.)
func TestCrossShardTxnsCommitWhicheverNodesClockIsOff(t *testing.T) {
	txn := cluster.DefaultTxnConfig()
	c := skewedCluster(t, 2, txn)
	a := keyOnShard(t, "acct", "shard-1", 2)
	b := keyOnShard(t, "acct", "shard-2", 2)
	c.MakeLeader("shard-1", aheadNode)
	c.MakeLeader("shard-2", behindNode)
	mustPut(t, c.Nodes[0], a, "100")
	mustPut(t, c.Nodes[0], b, "0")
	bal := 100
	for i, n := range c.Nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := n.Txn(ctx, transfer(a, b, 10, bal, 100-bal))
		cancel()
		if err != nil || !res.Succeeded || res.Mode != cluster.Mode2PC {
			t.Fatalf("transfer coordinated by %s (clock off by %s): %+v, %v", n.ID, skew[n.ID], res, err)
		}
		bal -= 10
		if got := mustGet(t, c.Nodes[(i+1)%3], b); got != fmt.Sprint(100-bal) {
			t.Fatalf("after the transfer via %s, %s = %s, want %d", n.ID, b, got, 100-bal)
		}
	}
	noTxnState(t, c, 2)
}

// TestALeaderWhoseClockRunsAheadAbortsNoLiveTxn: a transfer (primary
// shard-1, participant shard-2, both led by node1) is prepared and its
// coordinator is about to decide when the leadership of one shard moves to
// node2, whose clock is 30 s ahead. node2's recovery looks at the shard
// again and again while the coordinator is alive, and a write of the
// locked key on node2 gives up with 409; then the coordinator decides. The transaction commits with the id it was prepared under: the
// new leader did not take node1's stamps, 30 s old by its clock, for an
// abandoned transaction and abort it.
func TestALeaderWhoseClockRunsAheadAbortsNoLiveTxn(t *testing.T) {
	for _, moved := range []string{"shard-1", "shard-2"} {
		t.Run("leader of "+moved+" moves", func(t *testing.T) {
			txn := cluster.DefaultTxnConfig()
			txn.RecoveryInterval = 100 * time.Millisecond
			c := skewedCluster(t, 2, txn)
			a := keyOnShard(t, "acct", "shard-1", 2)
			b := keyOnShard(t, "acct", "shard-2", 2)
			c.MakeLeader("shard-1", plainNode)
			c.MakeLeader("shard-2", plainNode)
			mustPut(t, c.Nodes[0], a, "100")
			mustPut(t, c.Nodes[0], b, "0")

			coord := c.Nodes[plainNode]
			paused, release := make(chan string, 1), make(chan struct{})
			var once sync.Once
			coord.SetTxnHook(func(step cluster.TxnStep, id, _ string) error {
				if step == cluster.StepDecide {
					once.Do(func() { paused <- id; <-release })
				}
				return nil
			})
			defer coord.SetTxnHook(nil)
			type answer struct {
				res cluster.TxnResponse
				err error
			}
			done := make(chan answer, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				res, err := coord.Txn(ctx, transfer(a, b, 30, 100, 0))
				done <- answer{res, err}
			}()
			var id string
			select {
			case id = <-paused:
			case r := <-done:
				t.Fatalf("the transfer ended before its decision: %+v", r)
			case <-time.After(10 * time.Second):
				t.Fatal("the coordinator never reached its decision")
			}

			before := c.Nodes[aheadNode].TxnRecoveryRuns(moved)
			c.MakeLeader(moved, aheadNode)
			waitRecoveryRuns(t, c, aheadNode, moved, before)
			// A plain write of the moved shard's locked key waits for the
			// transaction too, and gives up (409) rather than abort it.
			key := map[string]string{"shard-1": a, "shard-2": b}[moved]
			pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.Nodes[aheadNode].Put(pctx, key, []byte("direct"), fsm.Condition{})
			pcancel()
			if !errors.Is(err, cluster.ErrConflict) {
				t.Fatalf("put of %s, locked by the live transaction: %v, want a conflict", key, err)
			}
			close(release)

			r := <-done
			if r.err != nil || !r.res.Succeeded {
				t.Fatalf("transfer: %+v, %v", r.res, r.err)
			}
			if r.res.ID != id {
				t.Fatalf("the transfer committed as %s, a retry: its first attempt %s was aborted", r.res.ID, id)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if rec, err := coord.TxnRecord(ctx, id); err != nil || rec.State != fsm.StateCommitted {
				t.Fatalf("record of %s: %+v, %v", id, rec, err)
			}
			noTxnState(t, c, 2)
			if ga, gb := mustGet(t, c.Nodes[2], a), mustGet(t, c.Nodes[2], b); ga != "70" || gb != "30" {
				t.Fatalf("%s=%s %s=%s, want 70 and 30", a, ga, b, gb)
			}
		})
	}
}

// TestANewLeaderKeepsRecordsForTheWholeRetention: a transfer commits and
// resolves while node1 leads its primary; then node2, 30 s ahead, takes
// the primary over. Its recovery passes keep the record (GET /v1/txn/{id}
// still finds it, as a client told to look it up after a 504 needs): by
// node2's clock the record is as old as the takeover, not 30 s. It is
// collected once node2 has kept it for the retention.
func TestANewLeaderKeepsRecordsForTheWholeRetention(t *testing.T) {
	txn := cluster.DefaultTxnConfig()
	txn.PrepareTimeout = 500 * time.Millisecond
	txn.RecoveryTimeout = time.Second
	txn.RecoveryInterval = 100 * time.Millisecond
	txn.Retention = 10 * time.Second
	c := skewedCluster(t, 2, txn)
	a := keyOnShard(t, "acct", "shard-1", 2)
	b := keyOnShard(t, "acct", "shard-2", 2)
	c.MakeLeader("shard-1", plainNode)
	mustPut(t, c.Nodes[0], a, "100")
	mustPut(t, c.Nodes[0], b, "0")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := c.Nodes[plainNode].Txn(ctx, transfer(a, b, 30, 100, 0))
	if err != nil || !res.Succeeded {
		t.Fatalf("transfer: %+v, %v", res, err)
	}
	noTxnState(t, c, 2)

	before := c.Nodes[aheadNode].TxnRecoveryRuns("shard-1")
	c.MakeLeader("shard-1", aheadNode)
	waitRecoveryRuns(t, c, aheadNode, "shard-1", before)
	if rec, err := c.Nodes[behindNode].TxnRecord(ctx, res.ID); err != nil || rec.State != fsm.StateCommitted {
		t.Fatalf("record of %s right after the takeover: %+v, %v", res.ID, rec, err)
	}
	raftkvtest.Eventually(t, 3*txn.Retention, func() error {
		_, err := c.Nodes[behindNode].TxnRecord(ctx, res.ID)
		if errors.Is(err, cluster.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("record of %s still kept: %v", res.ID, err)
	})
}
