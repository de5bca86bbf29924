package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/logstore"
	"github.com/raftkv/raftkv/registry"
)

// PrepareBackup takes a consistent checkpoint of every group and stages it
// for an archive; the caller streams it with Finish and must Close it. Each
// group is copied from this node's replica once it has applied everything
// its leader had committed when the backup began (a read index), so it
// holds every write acknowledged before the request. The shards' copies
// are then made one consistent cut as far as cross-shard transactions go
// (see backup_cut.go): copies taken before a prepare of a transaction that
// another copy holds applied are rolled forward through the log, and the
// archive carries the decision for every transaction they leave open,
// which restore applies. At most Config.MaxConcurrentBackups are staged at
// once, from the call until Close; past that it answers ErrOverloaded
// without touching the disk.
func (n *Node) PrepareBackup(ctx context.Context) (*backup.Writer, error) {
	release, err := stagedBackups.take(n)
	if err != nil {
		return nil, err
	}
	w, err := backup.NewWriter(os.TempDir(), backup.Manifest{
		ClusterID: n.clusterID, Shards: n.shards, Node: n.cfg.NodeID, CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		release()
		return nil, err
	}
	w.OnClose(release)
	if err := n.stageBackup(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// stageBackup copies every group, forms the cut and writes the checkpoints
// and decisions into w.
func (n *Node) stageBackup(ctx context.Context, w *backup.Writer) error {
	snaps := map[string]raft.FSMSnapshot{} // groups other than shards (meta)
	indexes := map[string]uint64{}
	copies := map[string]*shardCut{}
	var shards []string
	defer func() {
		for _, s := range snaps {
			s.Release()
		}
	}()
	for _, name := range n.order {
		g := n.groups[name]
		if err := n.waitReadIndex(ctx, g); err != nil {
			return err
		}
		if g.kv != nil {
			copies[name] = &shardCut{g: g, fork: g.kv.Fork()}
			shards = append(shards, name)
		} else {
			snap, err := g.fsm.Snapshot()
			if err != nil {
				return err
			}
			snaps[name], indexes[name] = snap, g.fsm.AppliedIndex()
		}
		n.backupCopied(name)
	}
	decisions, err := n.formCut(ctx, shards, copies)
	if err != nil {
		return err
	}
	for _, name := range n.order {
		snap, index := snaps[name], indexes[name]
		if c := copies[name]; c != nil {
			if snap, err = c.fork.Snapshot(); err != nil {
				return err
			}
			index = c.fork.AppliedIndex()
		}
		err := w.AddGroup(name, index, func(dst io.Writer) error {
			return snap.Persist(&writerSink{Writer: dst, id: "backup-" + name})
		})
		if err != nil {
			return err
		}
	}
	w.SetDecisions(decisions)
	return nil
}

// stagedBackups counts, per node, the backups between PrepareBackup and
// Close. A node leaves the map when its count falls back to zero, so the
// map holds only nodes with a backup on disk.
var stagedBackups = backupSlots{staged: map[*Node]int{}}

type backupSlots struct {
	mu     sync.Mutex
	staged map[*Node]int
}

// take claims one of n's backup slots; release gives it back (once).
func (s *backupSlots) take(n *Node) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit := n.cfg.MaxConcurrentBackups; s.staged[n] >= limit {
		return nil, fmt.Errorf("%w: %d backups are already being staged on node %s (the limit is %d); retry when one has been downloaded",
			ErrOverloaded, s.staged[n], n.cfg.NodeID, limit)
	}
	s.staged[n]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.staged[n]--; s.staged[n] <= 0 {
				delete(s.staged, n)
			}
		})
	}, nil
}

// waitReadIndex waits until this node's replica of g has applied
// everything g's leader had committed at the call.
func (n *Node) waitReadIndex(ctx context.Context, g *group) error {
	idx, _, err := route(ctx, n, g.name, "read-index", struct{}{}, n.readIndexLocal, idempotent)
	if err != nil {
		return fmt.Errorf("backup of %s: %w", g.name, err)
	}
	if err := g.fsm.WaitApplied(ctx, idx); err != nil {
		return fmt.Errorf("%w: backup of %s: this replica did not reach index %d", ErrTimeout, g.name, idx)
	}
	return nil
}

// readIndexLocal runs on a group's leader: the index a replica must reach
// to hold every write committed before the call.
func (n *Node) readIndexLocal(ctx context.Context, g *group, _ struct{}) (uint64, error) {
	if err := g.readBarrier(ctx); err != nil {
		return 0, err
	}
	return g.fsm.AppliedIndex(), nil
}

// writerSink lets an FSM snapshot persist into any writer.
type writerSink struct {
	io.Writer
	id string
}

func (s *writerSink) ID() string    { return s.id }
func (s *writerSink) Cancel() error { return nil }
func (s *writerSink) Close() error  { return nil }

// RestoreConfig names the node a backup is restored into.
type RestoreConfig struct {
	DataDir  string
	NodeID   string
	RaftAddr string
	HTTPAddr string
	Logger   hclog.Logger
}

// RestoreDataDir builds, from a backup archive, the data dir of a new
// single-node cluster holding the backup's data in every shard. `raftkv
// serve` with the same id and addresses then starts it, and other nodes
// join it as usual. The archive is verified completely before anything is
// written; the data dir must be empty or absent. The archive's decisions
// (format 2) are applied to the shards' checkpoints on the way, so the new
// cluster starts with every transaction the backup saw finished the same
// way on every shard.
func RestoreDataDir(archive string, rc RestoreConfig) (backup.Report, error) {
	rep, err := backup.Inspect(archive)
	if err != nil {
		return rep, fmt.Errorf("refusing to restore: %w", err)
	}
	if err := validateMember(registry.Node{ID: rc.NodeID, RaftAddr: rc.RaftAddr, HTTPAddr: rc.HTTPAddr}); err != nil {
		return rep, err
	}
	if entries, err := os.ReadDir(rc.DataDir); err == nil && len(entries) > 0 {
		return rep, fmt.Errorf("data dir %s is not empty: restore builds a new node and never overwrites one", rc.DataDir)
	}
	if rc.Logger == nil {
		rc.Logger = hclog.NewNullLogger()
	}
	m := rep.Manifest
	headers := map[string]backup.GroupReport{}
	for _, g := range rep.Groups {
		headers[g.Name] = g
	}
	self := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(rc.NodeID), Address: raft.ServerAddress(rc.RaftAddr)}}}
	f, err := os.Open(archive)
	if err != nil {
		return rep, err
	}
	defer f.Close()
	_, err = backup.Walk(f, func(rec backup.GroupRecord, body io.Reader) error {
		if rec.Name == MetaGroup {
			return nil // the registry is rebuilt for the new cluster below
		}
		h := headers[rec.Name]
		if len(rep.Transactions) > 0 {
			// Finish the transactions the backup decided, so the shards
			// start as one consistent cut (format 2 archives).
			f, err := settledCheckpoint(rec.Name, max(h.Term, 1), body, rep.Transactions)
			if err != nil {
				return err
			}
			snap, err := f.Snapshot()
			if err != nil {
				return err
			}
			defer snap.Release()
			return installCheckpoint(rc, rec.Name, max(f.AppliedIndex(), 1), max(h.Term, 1), self, snap.Persist)
		}
		return installCheckpoint(rc, rec.Name, max(h.Index, 1), max(h.Term, 1), self, func(sink raft.SnapshotSink) error {
			if _, err := io.Copy(sink, body); err != nil {
				sink.Cancel()
				return err
			}
			return sink.Close()
		})
	})
	if err != nil {
		return rep, err
	}
	clusterID := newClusterID()
	reg := registry.New(MetaGroup)
	reg.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: registry.EncodeInit(clusterID, m.Shards)})
	reg.Apply(&raft.Log{Index: 2, Term: 1, Type: raft.LogCommand, Data: registry.EncodeUpsertNode(registry.Node{ID: rc.NodeID, HTTPAddr: rc.HTTPAddr, RaftAddr: rc.RaftAddr})})
	snap, err := reg.Snapshot()
	if err != nil {
		return rep, err
	}
	defer snap.Release()
	if err := installCheckpoint(rc, MetaGroup, 2, 1, self, snap.Persist); err != nil {
		return rep, err
	}
	st := nodeState{NodeID: rc.NodeID, ClusterID: clusterID, Shards: m.Shards, LogFormat: currentLogFormat}
	return rep, writeFileAtomic(filepath.Join(rc.DataDir, "node.json"), st)
}

// installCheckpoint creates a group's storage holding one checkpoint whose
// configuration makes this node the only voter.
func installCheckpoint(rc RestoreConfig, name string, index, term uint64, conf raft.Configuration, write func(raft.SnapshotSink) error) error {
	dir := filepath.Join(rc.DataDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	db, err := logstore.Open(filepath.Join(rc.DataDir, sharedLogFile))
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := db.Group(name)
	if err != nil {
		return err
	}
	// raft's election term must not fall below the checkpoint's.
	if err := store.SetUint64([]byte("CurrentTerm"), term); err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotRetain, rc.Logger)
	if err != nil {
		return err
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(rc.RaftAddr))
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, conf, index, trans)
	if err != nil {
		return err
	}
	if err := write(sink); err != nil {
		return fmt.Errorf("write checkpoint of %s: %w", name, err)
	}
	return nil
}
