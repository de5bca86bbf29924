package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/hashicorp/raft"
)

// BenchmarkFSMMemory reports what the FSM keeps in memory per key: N keys
// of 100 B, named like `raftkv bench` names them ("bench/%08d"), applied
// through Apply in a shuffled order (a shard sees its keys in hash order,
// not sorted), then the same state restored from its checkpoint, which is
// how a restarted node gets it. The metrics are HeapAlloc after a full GC,
// minus HeapAlloc of an empty FSM, divided by N:
//
//	bytes/key           state built by Apply
//	restored-bytes/key  state built by Restore of a checkpoint of it
//
//	go test -run '^$' -bench 'FSMMemory/keys=1000000' -benchtime 1x ./fsm/
func BenchmarkFSMMemory(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			var applied, restored float64
			for range b.N {
				a, r := fsmMemory(b, n)
				applied += a
				restored += r
			}
			b.ReportMetric(applied/float64(b.N), "bytes/key")
			b.ReportMetric(restored/float64(b.N), "restored-bytes/key")
			b.ReportMetric(0, "ns/op") // the time is the loading, not the metric
		})
	}
}

// fsmMemory builds an FSM of n keys through Apply, then one from its
// checkpoint, and returns the heap each holds per key.
func fsmMemory(b *testing.B, n int) (applied, restored float64) {
	b.Helper()
	order := rand.New(rand.NewPCG(1, 2)).Perm(n)
	value := bytes.Repeat([]byte{'v'}, 100)

	base := heapAfterGC()
	f := New("shard-1")
	batch := make([]*raft.Log, 0, 64)
	for i, k := range order {
		// A fresh entry buffer per put, as raft hands the FSM one per log
		// entry; the FSM must not keep it.
		data := EncodePut(fmt.Sprintf("bench/%08d", k), value, Condition{})
		batch = append(batch, &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data})
		if len(batch) == cap(batch) || i == n-1 {
			f.ApplyBatch(batch)
			batch = batch[:0]
		}
	}
	clear(batch[:cap(batch)]) // drop the last entries before measuring
	applied = float64(heapAfterGC()-base) / float64(n)
	if f.Len() != n {
		b.Fatalf("FSM holds %d keys, want %d", f.Len(), n)
	}

	checkpoint := persist(b, f)
	f = nil
	base = heapAfterGC() // the checkpoint bytes are live in both readings
	g := New("shard-1")
	if err := restore(g, checkpoint); err != nil {
		b.Fatal(err)
	}
	restored = float64(heapAfterGC()-base) / float64(n)
	if g.Len() != n {
		b.Fatalf("restored FSM holds %d keys, want %d", g.Len(), n)
	}
	runtime.KeepAlive(g)
	runtime.KeepAlive(checkpoint)
	return applied, restored
}

// heapAfterGC returns the bytes of live heap objects once the garbage
// collector has run to completion (twice, so that objects freed by
// finalizers of the first cycle are gone too).
func heapAfterGC() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
