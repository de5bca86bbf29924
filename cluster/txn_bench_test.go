package cluster_test

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/raftkvtest"
)

// BenchmarkTxn compares a transfer between two keys of one shard (one raft
// entry) with a transfer between keys of two shards (two-phase commit:
// prepare on both, decide on the primary; the resolve of the other shard
// runs after the answer). In-process 3-node cluster with 2 shards, raft over
// in-memory transports, logs on disk.
//
//   - serial: one client, so ns/op is the latency of one transaction.
//   - parallel-16: 16 clients, spread over the three nodes as coordinators;
//     txn/s is the throughput, p50/p99 the latency the clients saw.
//
// Each client cycles through its own 32 key pairs, so no two transactions
// contend for a key. 2pc/serial-same-keys sends back-to-back transfers on
// one pair instead: the next transaction may find the keys still locked
// until the previous one has resolved in the background, and retries.
func BenchmarkTxn(b *testing.B) {
	c := raftkvtest.NewClusterWith(b, 3, 2, func(cfg *cluster.Config) { cfg.Logger = hclog.NewNullLogger() })
	const clients, pairsPer = 16, 32
	modes := []struct {
		name   string
		shards [2]string
		mode   string
	}{
		{"single-shard", [2]string{"shard-1", "shard-1"}, cluster.ModeSingle},
		{"2pc", [2]string{"shard-1", "shard-2"}, cluster.Mode2PC},
	}
	for _, m := range modes {
		// keys[i] are client i's pairs.
		keys := make([][][2]string, clients)
		for i := range keys {
			for j := range pairsPer {
				var p [2]string
				p[0] = benchKeyOn(b, fmt.Sprintf("bench-%s-%d-%d-a", m.name, i, j), m.shards[0])
				p[1] = benchKeyOn(b, fmt.Sprintf("bench-%s-%d-%d-b", m.name, i, j), m.shards[1])
				keys[i] = append(keys[i], p)
			}
		}
		benchSeed(b, c, keys)
		b.Run(m.name+"/serial", func(b *testing.B) {
			runTxnBench(b, c, keys[:1], m.mode)
		})
		b.Run(m.name+"/parallel-16", func(b *testing.B) {
			runTxnBench(b, c, keys, m.mode)
		})
		if m.mode == cluster.Mode2PC {
			b.Run(m.name+"/serial-same-keys", func(b *testing.B) {
				runTxnBench(b, c, [][][2]string{keys[0][:1]}, m.mode)
			})
		}
	}
}

// benchSeed writes a starting balance into every key, from 16 writers.
func benchSeed(b *testing.B, c *raftkvtest.Cluster, keys [][][2]string) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(keys))
	for i, pairs := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, p := range pairs {
				for _, k := range p {
					if _, err := c.Nodes[0].Put(ctx, k, []byte("1000000"), fsm.Condition{}); err != nil {
						errs[i] = err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// runTxnBench runs b.N transfers in all, one goroutine per client, each
// cycling through its key pairs, and reports throughput and latency
// percentiles.
func runTxnBench(b *testing.B, c *raftkvtest.Cluster, clients [][][2]string, mode string) {
	var next atomic.Int64
	lat := make([][]time.Duration, len(clients))
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for i, pairs := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := c.Nodes[i%len(c.Nodes)]
			for seq := 0; next.Add(1) <= int64(b.N); seq++ {
				pair := pairs[seq%len(pairs)]
				req := cluster.TxnRequest{
					Compares: []fsm.Compare{{Key: pair[0], Target: fsm.TargetVersion, Op: fsm.OpGreater, Number: 0}},
					Success: []fsm.Op{
						{Kind: fsm.OpPut, Key: pair[0], Value: []byte(strconv.Itoa(1000000 - seq))},
						{Kind: fsm.OpPut, Key: pair[1], Value: []byte(strconv.Itoa(1000000 + seq))},
					},
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				res, err := node.Txn(ctx, req)
				d := time.Since(t0)
				cancel()
				if err == nil && (!res.Succeeded || res.Mode != mode) {
					err = fmt.Errorf("succeeded %v, mode %s, want %s", res.Succeeded, res.Mode, mode)
				}
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				lat[i] = append(lat[i], d)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "txn/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// benchKeyOn returns the first key prefix-N that lives on shard (of 2).
func benchKeyOn(b *testing.B, prefix, shard string) string {
	b.Helper()
	for i := range 100000 {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if cluster.ShardFor(k, 2) == shard {
			return k
		}
	}
	b.Fatalf("no key of %s", shard)
	return ""
}
