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
	return &timedSink{SnapshotSink: sink, stats: s.stats, start: time.Now()}, nil
}

// timedSink counts the bytes of one checkpoint; raft writes it from one
// goroutine, so the count needs no lock.
type timedSink struct {
	raft.SnapshotSink
	stats *checkpointStats
	start time.Time
	bytes int64
}

func (t *timedSink) Write(p []byte) (int, error) {
	n, err := t.SnapshotSink.Write(p)
	t.bytes += int64(n)
	return n, err
}

func (t *timedSink) Close() error {
	err := t.SnapshotSink.Close()
	if err != nil {
		t.stats.failed.Add(1)
		return err
	}
	t.stats.durations.Observe(time.Since(t.start))
	t.stats.lastBytes.Store(t.bytes)
	return nil
}

func (t *timedSink) Cancel() error {
	t.stats.failed.Add(1)
	return t.SnapshotSink.Cancel()
}
