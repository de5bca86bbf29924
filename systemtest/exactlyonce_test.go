package systemtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/keyspace"
)

// exactlyOnceCounter is one counter of the exactly-once test: increments
// compare the counter's revision and put value+1 on the counter and on its
// audit key, which lives on the counter's shard (a single-shard
// transaction) or on another shard (a cross-shard one).
type exactlyOnceCounter struct {
	name, counter, audit string
	writers              int
	acked                atomic.Int64 // increments acknowledged as applied (Succeeded)
	answers              atomic.Int64 // determinate answers (either branch)
}

// keyOnShard returns a key with the prefix that lives on shard.
func keyOnShard(t *testing.T, prefix, shard string, shards int) string {
	t.Helper()
	for i := range 1000 {
		if k := fmt.Sprintf("%s-%d", prefix, i); keyspace.ShardFor(k, shards) == shard {
			return k
		}
	}
	t.Fatalf("no key with prefix %s on %s", prefix, shard)
	return ""
}

// TestExactlyOnceCountersUnderLeaderKills is the exactly-once check of
// issue 13. Writers increment counters, two by single-shard and two by
// cross-shard transactions, each increment a compare-on-revision txn sent
// through the client under its own idempotency key and retried with that
// key until its answer is determinate (the client resends after a 504 or a
// cut connection by itself; the writer retries whatever is left). Meanwhile
// the leaders of both shards are killed with SIGKILL, one after the other,
// and restarted. Without exactly-once, an increment applied by a killed
// leader whose answer was lost would be retried, find the revision moved,
// take the failure branch and go uncounted; at the end each counter (and
// its audit key) must equal the increments acknowledged: none lost, none
// doubled.
func TestExactlyOnceCountersUnderLeaderKills(t *testing.T) {
	skipShort(t)
	const shards = 2
	c := StartCluster(t, 3, shards)
	var endpoints []string
	for _, n := range c.Nodes {
		endpoints = append(endpoints, n.HTTPAddr)
	}
	cl := client.New(endpoints, client.WithTimeout(5*time.Second))
	// Two writers share each single-shard counter, so increments also
	// lose compares to each other; each cross-shard counter has one writer
	// (two would mostly lock each other out of the same two keys).
	var counters []*exactlyOnceCounter
	for i := range 2 {
		counters = append(counters,
			&exactlyOnceCounter{name: fmt.Sprintf("single-shard %d", i), writers: 2,
				counter: keyOnShard(t, fmt.Sprintf("eo/single%d", i), "shard-1", shards), audit: keyOnShard(t, fmt.Sprintf("eo/single%d-audit", i), "shard-1", shards)},
			&exactlyOnceCounter{name: fmt.Sprintf("cross-shard %d", i), writers: 1,
				counter: keyOnShard(t, fmt.Sprintf("eo/cross%d", i), "shard-2", shards), audit: keyOnShard(t, fmt.Sprintf("eo/cross%d-audit", i), "shard-1", shards)})
	}
	for _, k := range counters {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		for _, key := range []string{k.counter, k.audit} {
			if _, err := cl.Put(ctx, key, []byte("0")); err != nil {
				t.Fatalf("put %s: %v", key, err)
			}
		}
		cancel()
	}

	var (
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		replays   atomic.Int64 // answers that were a remembered first answer
		retried   atomic.Int64 // increments that needed more than one call
		unsettled atomic.Int64 // increments never answered determinately
	)
	var writers []*exactlyOnceCounter
	for _, k := range counters {
		for range k.writers {
			writers = append(writers, k)
		}
	}
	for w, k := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				idemKey := fmt.Sprintf("eo-w%d-%d", w, seq)
				res, calls, ok := incrementOnce(cl, k, idemKey)
				if !ok {
					unsettled.Add(1)
					t.Errorf("%s increment %s never got a determinate answer (%d calls)", k.name, idemKey, calls)
					return
				}
				if calls > 1 {
					retried.Add(1)
				}
				if res.Replayed {
					replays.Add(1)
				}
				if res.Succeeded {
					k.acked.Add(1)
				}
				k.answers.Add(1)
			}
		}()
	}

	// The nemesis: kill the leader of each shard in turn, once every
	// counter has had some increments answered, and bring it back once
	// every counter's increments are answered again.
	waitProgress := func(what string, n int64) {
		t.Helper()
		targets := make([]int64, len(counters))
		for i, k := range counters {
			targets[i] = k.answers.Load() + n
		}
		if err := WaitFor(60*time.Second, func() error {
			for i, k := range counters {
				if got := k.answers.Load(); got < targets[i] {
					return fmt.Errorf("%s: %d of %d answers %s", k.name, got, targets[i], what)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("writers stalled: %v", err)
		}
	}
	for round := range 6 {
		group := fmt.Sprintf("shard-%d", 1+round%shards)
		waitProgress("before the kill", 5)
		victim, err := c.WaitLeaderOf(t.Context(), group, 15*time.Second)
		mustOK(t, err)
		t.Logf("round %d: killing %s, leader of %s (pid %d)", round, victim.ID, group, victim.PID())
		mustOK(t, victim.Kill())
		waitProgress("after the kill", 3)
		mustOK(t, victim.Restart())
		mustOK(t, c.WaitConverged(t.Context(), ReadyTimeout))
	}
	waitProgress("after the last restart", 3)
	close(stop)
	wg.Wait()

	for _, k := range counters {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		got, err := cl.Txn(ctx, client.Txn{Success: []client.TxnOp{client.GetOp(k.counter), client.GetOp(k.audit)}})
		cancel()
		mustOK(t, err)
		value, _ := strconv.Atoi(string(got.Results[0].Value))
		audit, _ := strconv.Atoi(string(got.Results[1].Value))
		t.Logf("%s counter: %d, acknowledged increments: %d, audit %d", k.name, value, k.acked.Load(), audit)
		if int64(value) != k.acked.Load() || audit != value {
			t.Errorf("%s counter is %d and its audit %d after %d acknowledged increments: an increment was lost or applied twice",
				k.name, value, audit, k.acked.Load())
		}
	}
	t.Logf("%d increments needed a retry, %d answers were replays of a first answer, %d never settled",
		retried.Load(), replays.Load(), unsettled.Load())
}

// incrementOnce reads k's counter and increments it by one transaction
// under idemKey, sending it again with the same key until the answer is
// determinate. It returns the answer, how many calls it took, and false if
// none was determinate within a minute. A new read starts only after an
// answer that says nothing happened (a refused read, or a 2xx); a write
// whose outcome is open is only ever resent as it was.
func incrementOnce(cl *client.Client, k *exactlyOnceCounter, idemKey string) (client.TxnResult, int, bool) {
	deadline := time.Now().Add(time.Minute)
	var (
		value int
		rev   uint64
	)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cur, err := cl.Get(ctx, k.counter)
		cancel()
		if err == nil {
			value, _ = strconv.Atoi(string(cur.Value))
			rev = cur.Revision
			break
		}
		time.Sleep(50 * time.Millisecond) // a read failed during a failover: nothing to undo, read again
	}
	next := []byte(strconv.Itoa(value + 1))
	txn := client.Txn{
		Compare: []client.TxnCompare{client.CompareRevision(k.counter, "==", rev)},
		Success: []client.TxnOp{client.PutOp(k.counter, next), client.PutOp(k.audit, next)},
	}
	for calls := 1; time.Now().Before(deadline); calls++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := cl.Txn(ctx, txn, client.WithIdempotencyKey(idemKey))
		cancel()
		if err == nil {
			return res, calls, true
		}
		if errors.Is(err, client.ErrIdempotencyKeyReused) || errors.Is(err, client.ErrBadRequest) {
			return client.TxnResult{}, calls, false
		}
		// 503, 409, 504 or a cut connection: with the same key a resend is
		// always safe, whatever the first send did.
		time.Sleep(50 * time.Millisecond)
	}
	return client.TxnResult{}, 0, false
}
