package fsm

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

func BenchmarkApplyPut(b *testing.B) {
	f := New("shard-1")
	value := make([]byte, 100)
	entries := make([][]byte, 1<<14)
	for i := range entries {
		entries[i] = EncodePut(fmt.Sprintf("key/%08d", i*7919%100000), value, Condition{})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: entries[i%len(entries)]})
	}
}

type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) Close() error                { return nil }
func (discardSink) Cancel() error               { return nil }
func (discardSink) ID() string                  { return "discard" }

var _ raft.SnapshotSink = discardSink{}

func BenchmarkSnapshotPersist(b *testing.B) {
	h := populated(b, 100000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		snap, err := h.f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if err := snap.Persist(discardSink{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRestore(b *testing.B) {
	data := persist(b, populated(b, 100000).f)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := restore(New("shard-1"), data); err != nil {
			b.Fatal(err)
		}
	}
}
