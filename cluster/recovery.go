package cluster

import (
	"sync"
	"time"
)

// recovery records how a group came back on start: the checkpoint it loaded
// and the log it replayed on top (checkpoint + redo log).
type recovery struct {
	mu              sync.Mutex
	started         time.Time
	newestSnapshot  uint64 // index of the newest checkpoint on disk
	restoredIndex   uint64 // index of the checkpoint actually loaded (0: none)
	restoredKeys    int
	restoreMs       int64
	logLastIndex    uint64 // last log index on disk at open: what replay must reach
	replayedEntries uint64
	recoveryMs      int64 // -1 until replay is done
}

// RecoveryStatus is the part of a group's status that describes its start.
type RecoveryStatus struct {
	RestoredFromSnapshotIndex uint64 `json:"restored_from_snapshot_index"`
	RestoredKeys              int    `json:"restored_keys"`
	RestoreMs                 int64  `json:"restore_ms"`
	ReplayedEntries           uint64 `json:"replayed_entries"`
	RecoveryMs                int64  `json:"recovery_ms"`
}

func (r *recovery) status() RecoveryStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RecoveryStatus{
		RestoredFromSnapshotIndex: r.restoredIndex,
		RestoredKeys:              r.restoredKeys,
		RestoreMs:                 r.restoreMs,
		ReplayedEntries:           r.replayedEntries,
		RecoveryMs:                r.recoveryMs,
	}
}

// noteRestored is called right after raft has loaded the checkpoint.
func (g *group) noteRestored(started time.Time, newest, logLast uint64) {
	rec := &g.recovery
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.started = started
	rec.newestSnapshot = newest
	rec.logLastIndex = logLast
	rec.restoredIndex = parseUint(g.raft.Stats()["last_snapshot_index"])
	rec.restoreMs = time.Since(started).Milliseconds()
	rec.recoveryMs = -1
	if g.kv != nil {
		rec.restoredKeys = g.kv.Len()
	} else if g.reg != nil {
		rec.restoredKeys = len(g.reg.Nodes())
	}
	if newest > rec.restoredIndex {
		g.logger.Error("newest checkpoint could not be loaded; fell back to an older one and will replay more log",
			"newest_checkpoint_index", newest, "restored_index", rec.restoredIndex)
	}
	if rec.restoredIndex > 0 {
		g.logger.Info("checkpoint loaded", "index", rec.restoredIndex, "keys", rec.restoredKeys, "ms", rec.restoreMs)
	}
}

// watchReplay waits until the log found on disk has been applied again, then
// logs and records how long recovery took. Owned by the node.
func (g *group) watchReplay(stop <-chan struct{}) {
	rec := &g.recovery
	rec.mu.Lock()
	target, from := rec.logLastIndex, rec.restoredIndex
	rec.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for g.raft.AppliedIndex() < target {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	applied := g.raft.AppliedIndex()
	if applied > from {
		rec.replayedEntries = min(applied, target) - from
	}
	rec.recoveryMs = time.Since(rec.started).Milliseconds()
	g.logger.Info("recovery complete", "checkpoint_index", from, "keys_restored", rec.restoredKeys,
		"checkpoint_ms", rec.restoreMs, "entries_replayed", rec.replayedEntries, "total_ms", rec.recoveryMs)
}
