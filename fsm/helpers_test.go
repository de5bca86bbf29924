package fsm

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// harness feeds commands to an FSM at consecutive log indexes.
type harness struct {
	t   testing.TB
	f   *FSM
	idx uint64
}

func newHarness(t testing.TB) *harness { return &harness{t: t, f: New("shard-1")} }

func (h *harness) apply(data []byte) *Result {
	h.t.Helper()
	h.idx++
	out := h.f.Apply(&raft.Log{Index: h.idx, Term: 1, Type: raft.LogCommand, Data: data})
	r, ok := out.(*Result)
	if !ok {
		h.t.Fatalf("Apply returned %T, want *Result", out)
	}
	return r
}

func (h *harness) put(key, value string) *Result {
	return h.apply(EncodePut(key, []byte(value), Condition{}))
}

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

// persist snapshots f and returns the checkpoint bytes.
func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v after successful Persist", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func restore(f *FSM, b []byte) error {
	return f.Restore(nopCloser{bytes.NewReader(b)})
}

// dump returns every key of f in order.
func dump(f *FSM) []KV {
	items, _ := f.List("", "", 0)
	return items
}

type raftLog = raft.Log

func commandLog(idx uint64, data []byte) *raft.Log {
	return &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}
}
