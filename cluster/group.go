package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/histo"
	"github.com/raftkv/raftkv/logstore"
	"github.com/raftkv/raftkv/registry"
)

// stateMachine is what a group needs from its FSM beyond raft's interface:
// how far it has applied, so reads can wait for it.
type stateMachine interface {
	raft.BatchingFSM
	AppliedIndex() uint64
	WaitApplied(ctx context.Context, index uint64) error
}

// group is one raft group hosted by this node: its raft instance, storage,
// transport and state machine. Storage lives in <data-dir>/<name>/.
type group struct {
	name  string
	raft  *raft.Raft
	fsm   stateMachine
	kv    *fsm.FSM        // the data shards' state machine (nil for meta)
	reg   *registry.FSM   // the meta group's state machine (nil for shards)
	logs  *logstore.Store // this group's part of the node's shared log file
	snaps *raft.FileSnapshotStore
	// checkpoints times the checkpoints raft writes through snaps.
	checkpoints *checkpointStats
	trans       raft.Transport
	logger      hclog.Logger

	// readyTerm is the term in which this node, as leader, has committed a
	// barrier: only then is CommitIndex a safe read index (Raft §6.4).
	readyTerm atomic.Uint64
	readyMu   sync.Mutex // serialises the barrier per term
	confirm   confirmer  // shares leadership confirmations among reads

	leaderChanges atomic.Uint64
	// heartbeats are the followers whose heartbeats fail while this node
	// leads the group (followers.go); fed by watchLeaders.
	heartbeats heartbeatFailures
	// leaderMu guards leaderCh, which is closed (and replaced) whenever this
	// node sees the group's leader change, waking requests waiting on one.
	leaderMu sync.Mutex
	leaderCh chan struct{}
	// tenure ends the waits of requests forwarded to a leader this node
	// saw replaced (tenure.go).
	tenure    *tenure
	observer  *raft.Observer
	obsCh     chan raft.Observation
	closeOnce sync.Once
	recovery  recovery
	elections electionLog
	applies   histo.Histogram // writes this node led, proposal to applied (GroupStatus.Applies)
	// txnTimes dates the transaction state this node compares with its
	// own clock while it leads the shard (txn_clock.go); txnRecoveryRuns
	// counts the recovery passes it made over the shard as its leader.
	txnTimes        txnTimes
	txnRecoveryRuns atomic.Uint64

	// handover is held shared by every proposal from Apply to its outcome
	// and exclusively while leadership is handed over, so a planned move
	// starts only once the writes in flight have their answers, and writes
	// that arrive meanwhile wait and then follow the new leader.
	handover sync.RWMutex
	// pending holds a token per write proposed and not yet answered.
	pending chan struct{}
	// outcomes remembers recent results, for writes whose leader stepped
	// down before answering (outcome.go).
	outcomes *outcomeLog
	hasState bool // raft state existed on disk when the group was opened
}

// logCacheEntries is how many of a group's newest log entries are kept in
// memory (raft.LogCache): several appends' worth, so a follower that keeps up
// is always served from it.
const logCacheEntries = 1024

// snapshotRetain keeps two checkpoints so a corrupt newest one can fall back.
const snapshotRetain = 2

func openGroup(cfg *Config, name string, sm stateMachine, trans raft.Transport, logger hclog.Logger, db *logstore.DB) (*group, bool, error) {
	dir := filepath.Join(cfg.DataDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("group %s: %w", name, err)
	}
	logs, err := db.Group(name)
	if err != nil {
		return nil, false, fmt.Errorf("group %s: open log store: %w", name, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotRetain, logger.Named("snapshots"))
	if err != nil {
		return nil, false, fmt.Errorf("group %s: open snapshot store: %w", name, err)
	}
	existing, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return nil, false, fmt.Errorf("group %s: read state: %w", name, err)
	}
	var newest uint64
	if metas, err := snaps.List(); err == nil && len(metas) > 0 {
		newest = metas[0].Index
	}
	logLast, err := logs.LastIndex()
	if err != nil {
		return nil, false, fmt.Errorf("group %s: read log: %w", name, err)
	}
	// Replication reads back what was just appended, for every follower;
	// the cache answers those reads from memory instead of the log file.
	cached, err := raft.NewLogCache(logCacheEntries, logs)
	if err != nil {
		return nil, false, fmt.Errorf("group %s: log cache: %w", name, err)
	}
	started := time.Now()
	// NewRaft loads the newest checkpoint that restores cleanly (falling
	// back to older ones) before it returns.
	outcomes := &outcomeLog{stateMachine: sm}
	checkpoints := &checkpointStats{}
	r, err := raft.NewRaft(cfg.raftConfig(raftLogger{logger}), outcomes, cached, logs, timedSnapshots{snaps, checkpoints}, trans)
	if err != nil {
		return nil, false, fmt.Errorf("group %s: start raft: %w (no checkpoint could be loaded, or the log does not reach back to one)", name, err)
	}
	g := &group{name: name, raft: r, fsm: sm, logs: logs, snaps: snaps, checkpoints: checkpoints, trans: trans, logger: logger,
		pending: make(chan struct{}, max(cfg.MaxPendingWrites, 1)), outcomes: outcomes,
		obsCh: make(chan raft.Observation, 16), leaderCh: make(chan struct{})}
	g.tenure = newTenure(g.leaderID, forwardGrace)
	g.observer = raft.NewObserver(g.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState, raft.PeerObservation,
			raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(g.observer)
	g.kv, g.reg = kvOf(sm), regOf(sm)
	g.noteRestored(started, newest, logLast)
	g.campaignIfAlone(raft.ServerID(cfg.NodeID))
	return g, existing, nil
}

// campaignIfAlone starts an election at once when this node is the group's
// only voter (a single-node cluster starting or restarting): nobody else
// can lead, so waiting out the heartbeat timeout (1 to 2 s by default)
// would only delay readiness. raft has no call for it, but lowering the
// heartbeat timeout wakes its follower loop, which then finds it never
// heard from a leader and campaigns; the timeout is put back at once.
// Groups with other voters wait as usual, so a restarting member does not
// disturb a leader that is there.
func (g *group) campaignIfAlone(self raft.ServerID) {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters, alone := 0, false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
			alone = s.ID == self
		}
	}
	if voters != 1 || !alone {
		return
	}
	rc := g.raft.ReloadableConfig()
	kick := rc
	kick.HeartbeatTimeout -= time.Millisecond
	if err := g.raft.ReloadConfig(kick); err != nil {
		return // e.g. the lease timeout equals the heartbeat timeout: wait as usual
	}
	if err := g.raft.ReloadConfig(rc); err != nil {
		g.logger.Warn("could not restore the heartbeat timeout", "error", err)
	}
}

func kvOf(sm stateMachine) *fsm.FSM {
	kv, _ := sm.(*fsm.FSM)
	return kv
}

func regOf(sm stateMachine) *registry.FSM {
	reg, _ := sm.(*registry.FSM)
	return reg
}

// watchLeaders counts leader changes, records this node's candidacies
// and step-downs, and publishes every observation as an event until stop
// closes. Owned by the node.
func (g *group) watchLeaders(stop <-chan struct{}, heartbeat time.Duration, record func(ElectionEvent), publish func(*group, Event)) {
	for {
		select {
		case <-stop:
			return
		case o := <-g.obsCh:
			if e, ok := observationEvent(g, o); ok {
				publish(g, e)
			}
			g.heartbeats.observe(o)
			if s, ok := o.Data.(raft.RaftState); ok {
				if ev, ok := g.noteState(s, isClosed(stop), heartbeat); ok {
					g.logger.Log(electionLogLevel(ev.Cause), "election event", "event", ev.Event, "cause", ev.Cause, "term", ev.Term)
					record(ev)
					publish(g, Event{At: ev.At, Type: EventElection, Event: ev.Event, Cause: ev.Cause, Term: ev.Term})
				}
			}
			if lo, ok := o.Data.(raft.LeaderObservation); ok {
				g.leaderChanges.Add(1)
				g.leaderMu.Lock()
				close(g.leaderCh)
				g.leaderCh = make(chan struct{})
				g.leaderMu.Unlock()
				g.tenure.changed()
				g.logger.Info("leader changed", "leader", lo.LeaderID)
			}
		}
	}
}

// leaderChanged returns a channel closed at the next leader change this
// node observes.
func (g *group) leaderChanged() <-chan struct{} {
	g.leaderMu.Lock()
	defer g.leaderMu.Unlock()
	return g.leaderCh
}

// bootstrap makes this node the only voter of a brand-new group.
func (g *group) bootstrap(id, raftAddr string) error {
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(raftAddr),
	}}}
	err := g.raft.BootstrapCluster(conf).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("group %s: bootstrap: %w", g.name, err)
	}
	g.campaignIfAlone(raft.ServerID(id))
	return nil
}

// isLeader reports whether this node leads the group right now.
func (g *group) isLeader() bool { return g.raft.State() == raft.Leader }

// leaderID returns the id of the leader this node knows of, or "".
func (g *group) leaderID() string {
	_, id := g.raft.LeaderWithID()
	return string(id)
}

// apply proposes cmd and waits for it to be committed and applied. The
// returned value is the FSM's response.
func (g *group) apply(ctx context.Context, cmd []byte) (interface{}, error) {
	select {
	case g.pending <- struct{}{}:
		defer func() { <-g.pending }()
	default:
		return nil, fmt.Errorf("%w: %s has %d writes in flight", ErrOverloaded, g.name, cap(g.pending))
	}
	g.handover.RLock()
	defer g.handover.RUnlock()
	if !g.isLeader() {
		return nil, errNotLeader
	}
	term := g.raft.CurrentTerm()
	start := time.Now()
	f := g.raft.Apply(cmd, timeoutFrom(ctx))
	err := f.Error()
	if err == nil {
		g.applies.Observe(time.Since(start))
	}
	if err != nil {
		if errors.Is(err, raft.ErrLeadershipLost) {
			if index := f.Index(); index > 0 {
				return g.outcomeOf(ctx, cmd, index, term)
			}
			return nil, errNotLeader // never reached the log
		}
		return nil, translateRaftError(ctx, err)
	}
	return f.Response(), nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// translateReadError is translateRaftError for the steps of a read: losing
// leadership part-way through a read changes nothing (a barrier is a no-op
// entry), so the read is simply tried again on the new leader.
func translateReadError(ctx context.Context, err error) error {
	if errors.Is(err, raft.ErrLeadershipLost) {
		return errNotLeader
	}
	return translateRaftError(ctx, err)
}

// translateRaftError maps raft's errors to ours, keeping apart the ones that
// prove nothing happened (safe to retry elsewhere) from those that leave the
// outcome unknown.
func translateRaftError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return errNotLeader
	case errors.Is(err, raft.ErrEnqueueTimeout):
		if ctx.Err() != nil {
			return fmt.Errorf("%w: not proposed before the deadline", ErrUnavailable)
		}
		return errNotLeader
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: leadership lost while committing", ErrIndeterminate)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: node is shutting down", ErrIndeterminate)
	}
	return err
}

// timeoutFrom turns a context deadline into the timeout raft's API wants.
func timeoutFrom(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return 5 * time.Second
}

// readBarrier makes a local read linearizable (the read-index method of the
// Raft dissertation, §6.4): note the commit index, confirm with a quorum that
// this node is still the leader, then wait until the state machine has
// applied everything up to the noted index. A new leader's commit index is
// only trustworthy once it has committed an entry of its own term, so the
// first read of each term goes through a barrier.
func (g *group) readBarrier(ctx context.Context) error {
	if !g.isLeader() {
		return errNotLeader
	}
	term := g.raft.CurrentTerm()
	if g.readyTerm.Load() != term {
		if err := g.termBarrier(ctx, term); err != nil {
			return err
		}
	}
	readIndex := g.raft.CommitIndex()
	if err := g.confirm.confirm(func() error { return g.raft.VerifyLeader().Error() }); err != nil {
		return translateReadError(ctx, err)
	}
	if g.raft.CurrentTerm() != term {
		return errNotLeader
	}
	target, err := g.lastAppliableIndex(readIndex)
	if err != nil {
		return err
	}
	if err := g.fsm.WaitApplied(ctx, target); err != nil {
		return fmt.Errorf("%w: waiting for index %d to apply", ErrTimeout, target)
	}
	return nil
}

func (g *group) termBarrier(ctx context.Context, term uint64) error {
	g.readyMu.Lock()
	defer g.readyMu.Unlock()
	if g.readyTerm.Load() == term {
		return nil
	}
	if err := g.raft.Barrier(timeoutFrom(ctx)).Error(); err != nil {
		return translateReadError(ctx, err)
	}
	if g.raft.CurrentTerm() == term {
		g.readyTerm.Store(term)
	}
	return nil
}

// lastAppliableIndex returns the highest index ≤ upTo whose entry the state
// machine will see. raft never hands no-op and barrier entries to the FSM, so
// waiting for the FSM to reach a commit index that ends on one would hang.
// Entries no longer in the log were compacted into a snapshot, which the FSM
// has already absorbed.
//
// An entry that cannot be read is an error: taking it for "nothing to wait
// for" would let a linearizable read answer from a state that lacks it.
func (g *group) lastAppliableIndex(upTo uint64) (uint64, error) {
	applied := g.fsm.AppliedIndex()
	var entry raft.Log
	for i := upTo; i > applied; i-- {
		if err := g.logs.GetLog(i, &entry); err != nil {
			if applied = g.fsm.AppliedIndex(); applied >= i {
				// Applied (and perhaps compacted) meanwhile: nothing below
				// it is left to wait for.
				return applied, nil
			}
			if first, ferr := g.logs.FirstIndex(); ferr == nil && (first == 0 || i < first) {
				// Compacted into the checkpoint the state machine holds:
				// a restart, an installed checkpoint or an outage recovery
				// leaves no log below the checkpoint's index, whose last
				// entries (raft's own no-ops) the FSM never counted.
				return g.fsm.AppliedIndex(), nil
			}
			return 0, fmt.Errorf("%w: %s: reading log entry %d: %v", ErrUnavailable, g.name, i, err)
		}
		if entry.Type == raft.LogCommand || entry.Type == raft.LogConfiguration {
			return i, nil
		}
	}
	return applied, nil
}

// configuration returns the group's latest membership as this node knows it.
func (g *group) configuration() (raft.Configuration, uint64, error) {
	f := g.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, 0, err
	}
	return f.Configuration(), f.Index(), nil
}

// hasConfiguration reports whether this replica knows any membership yet (a
// node that is still joining knows none).
func (g *group) hasConfiguration() bool {
	conf, _, err := g.configuration()
	return err == nil && len(conf.Servers) > 0
}

// isMember reports whether id is a voter (voter=true) or any member.
func (g *group) isMember(id string, voter bool) bool {
	conf, _, err := g.configuration()
	if err != nil {
		return false
	}
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			return !voter || s.Suffrage == raft.Voter
		}
	}
	return false
}

// close shuts raft down, then the transport and the stores, in that order.
func (g *group) close() error {
	var err error
	g.closeOnce.Do(func() {
		g.raft.DeregisterObserver(g.observer)
		if e := g.raft.Shutdown().Error(); e != nil {
			err = e
		}
		// NetworkTransport.Close leaves pooled outgoing connections open,
		// which would keep the peers' reader goroutines blocked.
		if cs, ok := g.trans.(interface{ CloseStreams() }); ok {
			cs.CloseStreams()
		}
		if c, ok := g.trans.(raft.WithClose); ok {
			if e := c.Close(); e != nil && err == nil {
				err = e
			}
		}
	})
	return err
}
