package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/raftkvtest"
)

// keyOn returns a key with the prefix that lives on shard.
func keyOn(t *testing.T, prefix, shard string, shards int) string {
	t.Helper()
	for i := range 1000 {
		if k := fmt.Sprintf("%s-%d", prefix, i); cluster.ShardFor(k, shards) == shard {
			return k
		}
	}
	t.Fatalf("no key with prefix %s on %s", prefix, shard)
	return ""
}

// keyed returns a context with a deadline and the idempotency key.
func keyed(t *testing.T, key string) context.Context {
	ctx, cancel := context.WithTimeout(cluster.WithIdempotencyKey(context.Background(), key), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// another returns the index of a running node other than i.
func another(c *raftkvtest.Cluster, i int) int {
	for j, n := range c.Nodes {
		for _, r := range c.Running() {
			if j != i && r == n {
				return j
			}
		}
	}
	return -1
}

// TestAKeyedPutRetriedAfterItsLeaderDiedReturnsTheFirstResult: a put with
// an idempotency key is applied by the shard's leader; that leader is
// stopped, another write changes the key, and the client's retry of the
// put (same key) goes to another node. It is answered with the first
// result (revision, index, term) and applies nothing.
func TestAKeyedPutRetriedAfterItsLeaderDiedReturnsTheFirstResult(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	key := keyOn(t, "once", "shard-1", 2)
	old := c.Leader("shard-1")
	first, err := c.Nodes[old].Put(keyed(t, "put-1"), key, []byte("first"), fsm.Condition{})
	if err != nil || first.Replayed {
		t.Fatalf("first put: %+v %v", first, err)
	}
	c.Stop(old)
	via := another(c, old)
	mustPut(t, c.Nodes[via], key, "second")

	retry, err := c.Nodes[via].Put(keyed(t, "put-1"), key, []byte("first"), fsm.Condition{})
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !retry.Replayed || retry.Index != first.Index || retry.Term != first.Term ||
		retry.KV.ModRevision != first.KV.ModRevision || retry.KV.Version != first.KV.Version {
		t.Fatalf("retry answered %+v, want the first answer %+v, replayed", retry, first)
	}
	if got := mustGet(t, c.Nodes[via], key); got != "second" {
		t.Fatalf("%s = %q after the retry, want second: the retry must not apply again", key, got)
	}

	// The same key for another request is refused, and changes nothing.
	_, err = c.Nodes[via].Delete(keyed(t, "put-1"), key, fsm.Condition{})
	if !errors.Is(err, cluster.ErrIdempotencyKeyReused) {
		t.Fatalf("delete under the put's key: %v, want ErrIdempotencyKeyReused", err)
	}
	if got := mustGet(t, c.Nodes[via], key); got != "second" {
		t.Fatalf("%s = %q, want second", key, got)
	}
}

// incr is the counter increment of the exactly-once tests: if counter is
// still at revision rev, set it to value+1 and note the increment on the
// audit key (another shard when audit is set there).
func incr(counter, audit string, rev uint64, value int) cluster.TxnRequest {
	next := []byte(strconv.Itoa(value + 1))
	return cluster.TxnRequest{
		Compares: []fsm.Compare{{Key: counter, Target: fsm.TargetRevision, Op: fsm.OpEqual, Number: rev}},
		Success:  []fsm.Op{{Kind: fsm.OpPut, Key: counter, Value: next}, {Kind: fsm.OpPut, Key: audit, Value: next}, {Kind: fsm.OpGet, Key: audit}},
		Failure:  []fsm.Op{{Kind: fsm.OpGet, Key: counter}},
	}
}

// TestACrossShardTxnRetriedOnAnotherNodeDoesNotRunTwice: an increment
// across two shards commits under a key; the primary's leadership moves
// and the retry goes through another node. Without the key the retry
// would run again and take the failure branch (the compare no longer
// holds); with it, the answer is the first one (same id, same results) and
// the counter moved once.
func TestACrossShardTxnRetriedOnAnotherNodeDoesNotRunTwice(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	counter, audit := keyOn(t, "counter", "shard-1", 2), keyOn(t, "audit", "shard-2", 2)
	mustPut(t, c.Nodes[0], counter, "0")
	cur, err := c.Nodes[0].Get(context.Background(), counter, cluster.Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	req := incr(counter, audit, cur.KV.ModRevision, 0)
	first, err := c.Nodes[0].Txn(keyed(t, "incr-1"), req)
	if err != nil || !first.Succeeded || first.Mode != cluster.Mode2PC || first.Replayed {
		t.Fatalf("first increment: %+v %v", first, err)
	}
	old := c.Leader("shard-1")
	c.MakeLeader("shard-1", (old+1)%3)

	retry, err := c.Nodes[(old+2)%3].Txn(keyed(t, "incr-1"), req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !retry.Replayed || retry.ID != first.ID || !retry.Succeeded || fmt.Sprint(retry.Results) != fmt.Sprint(first.Results) {
		t.Fatalf("retry answered %+v, want the first answer %+v", retry, first)
	}
	if got := mustGet(t, c.Nodes[0], counter); got != "1" {
		t.Fatalf("counter = %s, want 1", got)
	}
	if rec, err := c.Nodes[1].TxnRecord(context.Background(), first.ID); err != nil || rec.State != fsm.StateCommitted {
		t.Fatalf("record of %s: %+v %v", first.ID, rec, err)
	}
}

// TestAKeyedSingleShardTxnReplaysItsIDAndResults: a single-shard
// transaction's retry has the same id and results as its first answer.
func TestAKeyedSingleShardTxnReplaysItsIDAndResults(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	counter, audit := keyOn(t, "counter", "shard-2", 2), keyOn(t, "audit", "shard-2", 2)
	mustPut(t, c.Nodes[0], counter, "5")
	cur, err := c.Nodes[0].Get(context.Background(), counter, cluster.Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	req := incr(counter, audit, cur.KV.ModRevision, 5)
	first, err := c.Nodes[1].Txn(keyed(t, "single-1"), req)
	if err != nil || first.Mode != cluster.ModeSingle || !first.Succeeded {
		t.Fatalf("first: %+v %v", first, err)
	}
	retry, err := c.Nodes[2].Txn(keyed(t, "single-1"), req)
	if err != nil || !retry.Replayed || retry.ID != first.ID || fmt.Sprint(retry.Results) != fmt.Sprint(first.Results) {
		t.Fatalf("retry: %+v %v, want the first answer %+v", retry, err, first)
	}
	if got := mustGet(t, c.Nodes[0], counter); got != "6" {
		t.Fatalf("counter = %s, want 6", got)
	}
}

// TestKeysAreForgottenAfterTheWindow: with a 1 s window, every replica's
// table empties through the log, and the same request under the key is
// then a new write.
func TestKeysAreForgottenAfterTheWindow(t *testing.T) {
	c := raftkvtest.NewClusterWith(t, 3, 1, func(cfg *cluster.Config) { cfg.IdempotencyWindow = time.Second })
	if _, err := c.Nodes[0].Put(keyed(t, "k"), "gc", []byte("v"), fsm.Condition{}); err != nil {
		t.Fatal(err)
	}
	leader := c.Nodes[c.Leader("shard-1")]
	if s, _ := leader.IdempotencySummary("shard-1"); s.Keys != 1 {
		t.Fatalf("the leader remembers %d keys right after the put, want 1", s.Keys)
	}
	raftkvtest.Eventually(t, 20*time.Second, func() error {
		for _, n := range c.Nodes {
			if s, _ := n.IdempotencySummary("shard-1"); s.Keys != 0 {
				return fmt.Errorf("%s still remembers %d keys", n.ID, s.Keys)
			}
		}
		return nil
	})
	again, err := c.Nodes[1].Put(keyed(t, "k"), "gc", []byte("v"), fsm.Condition{})
	if err != nil || again.Replayed || again.KV.Version != 2 {
		t.Fatalf("the request after the window: %+v %v, want a new write (version 2)", again, err)
	}
}

// TestABadIdempotencyKeyIsRefused: keys outside the rules are a bad
// request and nothing is written.
func TestABadIdempotencyKeyIsRefused(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 1)
	for _, k := range []string{"", "has space", string(make([]byte, cluster.MaxIdempotencyKeyBytes+1)), "tab\there"} {
		if _, err := c.Nodes[0].Put(keyed(t, k), "bad", []byte("v"), fsm.Condition{}); !errors.Is(err, cluster.ErrBadRequest) {
			t.Errorf("key %q: %v, want ErrBadRequest", k, err)
		}
	}
	if got := mustGet(t, c.Nodes[0], "bad"); got != "<absent>" {
		t.Fatalf("bad = %q, want absent", got)
	}
}
