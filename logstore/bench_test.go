package logstore

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// The candidates for a node's durable write path, each with five groups
// (meta and four shards) appending batches of 8 entries of 100 bytes at
// once, as their leaders do under load. One op is one batch made durable.
//
//	go test -run '^$' -bench StoreLogs -benchtime 3s ./logstore/
func BenchmarkStoreLogs(b *testing.B) {
	const groups = 5
	b.Run("bolt-file-per-group", func(b *testing.B) {
		stores := make([]raft.LogStore, groups)
		for g := range stores {
			s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(b.TempDir(), "raft.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			stores[g] = s
		}
		runAppends(b, stores)
	})
	b.Run("wal-shared-group-commit", func(b *testing.B) {
		d, _ := openTemp(b)
		stores := make([]raft.LogStore, groups)
		for g := range stores {
			s, err := d.Group(fmt.Sprint("g", g))
			if err != nil {
				b.Fatal(err)
			}
			stores[g] = s
		}
		runAppends(b, stores)
		st := d.Stats()
		b.ReportMetric(float64(st.Requests)/float64(max(st.Writes, 1)), "appends/commit")
	})
}

func runAppends(b *testing.B, stores []raft.LogStore) {
	value := make([]byte, 100)
	var next atomic.Int64
	var wg sync.WaitGroup
	before := cpuTime()
	b.ResetTimer()
	for _, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			index := uint64(1)
			for next.Add(1) <= int64(b.N) {
				batch := make([]*raft.Log, 8)
				for i := range batch {
					batch[i] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: value}
					index++
				}
				if err := s.StoreLogs(batch); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
