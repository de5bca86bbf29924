package cluster

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/histo"
)

// checkpointStats times the checkpoints raft writes for one group (by its
// schedule, on POST /v1/cluster/snapshot, or when it installs one from the
// leader) and keeps the size of the newest.
type checkpointStats struct {
	durations histo.Histogram
	lastBytes atomic.Int64
	failed    atomic.Uint64
	// onWritten, once set, hears of each checkpoint written.
	onWritten atomic.Pointer[func(index uint64, bytes int64, took time.Duration)]
}

// timedSnapshots is the group's snapshot store as raft sees it: every
// checkpoint written through it is timed from Create to Close.
type timedSnapshots struct {
	raft.SnapshotStore
	stats *checkpointStats
}

func (s timedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, conf raft.Configuration,
	confIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, conf, confIndex, trans)
	if err != nil {
		s.stats.failed.Add(1)
		return nil, err
	}
	return &timedSink{SnapshotSink: sink, stats: s.stats, start: time.Now(), index: index}, nil
}

// timedSink counts the bytes of one checkpoint; raft writes it from one
// goroutine, so the count needs no lock.
type timedSink struct {
	raft.SnapshotSink
	stats *checkpointStats
	start time.Time
	index uint64
	bytes int64
	// done: the first Close or Cancel was counted. Both the state
	// machine's Persist and raft close the sink, so later calls only pass
	// through.
	done bool
}

func (t *timedSink) Write(p []byte) (int, error) {
	n, err := t.SnapshotSink.Write(p)
	t.bytes += int64(n)
	return n, err
}

func (t *timedSink) Close() error {
	err := t.SnapshotSink.Close()
	if t.done {
		return err
	}
	t.done = true
	if err != nil {
		t.stats.failed.Add(1)
		return err
	}
	took := time.Since(t.start)
	t.stats.durations.Observe(took)
	t.stats.lastBytes.Store(t.bytes)
	if f := t.stats.onWritten.Load(); f != nil {
		(*f)(t.index, t.bytes, took)
	}
	return nil
}

func (t *timedSink) Cancel() error {
	if !t.done {
		t.done = true
		t.stats.failed.Add(1)
	}
	return t.SnapshotSink.Cancel()
}
