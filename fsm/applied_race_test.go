package fsm

import (
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// A snapshot taken while batches apply (a backup does this) never holds a
// key written after the index its header carries; restore would refuse it.
func TestASnapshotTakenDuringApplyCoversEveryChangeInIt(t *testing.T) {
	f := New("shard-1")
	const batches = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		index := uint64(1)
		for b := range batches {
			logs := make([]*raft.Log, 4)
			for i := range logs {
				logs[i] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: EncodePut(fmt.Sprint("k", b%50, "-", i), []byte("v"), Condition{})}
				index++
			}
			f.ApplyBatch(logs)
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			return
		default:
		}
		snap, err := f.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		s := snap.(*fsmSnapshot)
		var newest uint64
		s.st.kv.Scan(func(e entry) bool {
			newest = max(newest, e.mod)
			return true
		})
		if newest > s.hdr.Index {
			t.Fatalf("snapshot header says index %d but holds a key written at %d", s.hdr.Index, newest)
		}
		snap.Release()
	}
}
