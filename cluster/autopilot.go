package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// Member health and dead-node cleanup, on hashicorp/raft-autopilot (the
// library Consul's autopilot is built from). The node that leads the meta
// group runs it against the meta group's raft:
//
//   - a prober pings every registered node over the raft port each
//     second; a node is "failed" once none of its pings has answered for
//     Config.DeadNodeTimeout (with the timeout off, every node counts as
//     alive and nothing is ever removed);
//   - autopilot fetches each live node's meta-group state (term, last
//     index, last leader contact) and tracks whether it is healthy and
//     since when it has been stable;
//   - for a failed node, autopilot's own rules decide whether it may be
//     removed: never more than a minority of the voters at once, so a
//     removal never costs the cluster its quorum; then RemoveFailedServer
//     runs Leave, which takes the node out of every shard, the registry
//     and meta together.
//
// raftkv keeps its own promotion (a joining node is promoted in every
// group once it has caught up, membership.go), so the promoter given to
// autopilot promotes and demotes nobody, and it leaves alone the servers
// autopilot calls stale (in the meta configuration but not the registry):
// those are mid-join or mid-leave, which finish by themselves.

// autopilotUpdateInterval is how often autopilot refreshes its view;
// probeInterval how often the prober pings.
const (
	autopilotUpdateInterval = time.Second
	autopilotReconcile      = 2 * time.Second
	probeInterval           = time.Second
)

// pilot is the autopilot run of one meta leadership.
type pilot struct {
	n       *Node
	ap      *autopilot.Autopilot
	started time.Time

	mu       sync.Mutex
	lastSeen map[string]time.Time // last answered ping or stats call
	removing map[string]bool      // Leave in progress
}

// MemberHealth is a node's health as the meta leader's autopilot sees it
// (NodeStatus.Health).
type MemberHealth struct {
	// Status is "alive", or "failed" once the node has not answered for
	// the dead-node timeout.
	Status string `json:"status"`
	// Healthy: alive, in contact with the leader within the threshold and
	// not trailing it by too many log entries (autopilot's test).
	Healthy bool `json:"healthy"`
	// StableSince is when Healthy last changed.
	StableSince time.Time `json:"stable_since"`
	// LastSeenMs is how long ago the node last answered.
	LastSeenMs int64 `json:"last_seen_ms"`
}

// autopilotLoop runs autopilot whenever this node leads the meta group.
// Owned by the node.
func (n *Node) autopilotLoop() {
	for {
		for !n.meta.isLeader() {
			select {
			case <-n.stop:
				return
			case <-n.meta.leaderChanged():
			}
		}
		p := &pilot{n: n, started: time.Now(), lastSeen: map[string]time.Time{}, removing: map[string]bool{}}
		p.ap = autopilot.New(n.meta.raft, p,
			autopilot.WithLogger(n.logger.Named("autopilot")),
			autopilot.WithPromoter(&keepMembership{}),
			autopilot.WithUpdateInterval(autopilotUpdateInterval),
			autopilot.WithReconcileInterval(autopilotReconcile))
		ctx, cancel := context.WithCancel(context.Background())
		p.ap.Start(ctx)
		probed := make(chan struct{})
		go func() { defer close(probed); p.probeLoop(ctx) }()
		n.pilot.Store(p)
		stopped := false
		for !stopped && n.meta.isLeader() {
			select {
			case <-n.stop:
				stopped = true
			case <-n.meta.leaderChanged():
			}
		}
		n.pilot.Store(nil)
		cancel()
		<-p.ap.Stop()
		<-probed
		if stopped {
			return
		}
	}
}

// probeLoop pings every registered node each probeInterval until ctx ends.
func (p *pilot) probeLoop(ctx context.Context) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, m := range p.n.meta.reg.Nodes() {
			if m.ID == p.n.cfg.NodeID {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if p.n.probe(ctx, m.RaftAddr) == nil {
					p.seen(m.ID)
				}
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *pilot) seen(id string) {
	p.mu.Lock()
	p.lastSeen[id] = time.Now()
	p.mu.Unlock()
}

// since is when id last answered; a node not heard from since this
// leadership began counts from its start, so a new leader gives everyone
// the full timeout.
func (p *pilot) since(id string) time.Time {
	if id == p.n.cfg.NodeID {
		return time.Now()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.lastSeen[id]; ok {
		return t
	}
	return p.started
}

func (p *pilot) failed(id string) bool {
	timeout := p.n.cfg.DeadNodeTimeout
	return timeout > 0 && time.Since(p.since(id)) > timeout
}

// AutopilotConfig is autopilot's tuning. LastContactThreshold and
// MaxTrailingLogs only decide what "healthy" means for the status.
func (p *pilot) AutopilotConfig() *autopilot.Config {
	return &autopilot.Config{
		CleanupDeadServers:      p.n.cfg.DeadNodeTimeout > 0,
		LastContactThreshold:    max(4*p.n.cfg.HeartbeatTimeout, time.Second),
		MaxTrailingLogs:         max(p.n.cfg.TrailingLogs, 1000),
		ServerStabilizationTime: 10 * time.Second,
	}
}

func (p *pilot) NotifyState(*autopilot.State) {}

// KnownServers are the registry's nodes.
func (p *pilot) KnownServers() map[raft.ServerID]*autopilot.Server {
	out := map[raft.ServerID]*autopilot.Server{}
	for _, m := range p.n.meta.reg.Nodes() {
		status := autopilot.NodeAlive
		if p.failed(m.ID) {
			status = autopilot.NodeFailed
		}
		out[raft.ServerID(m.ID)] = &autopilot.Server{
			ID: raft.ServerID(m.ID), Name: m.ID, Address: raft.ServerAddress(m.RaftAddr),
			NodeStatus: status, RaftVersion: raft.ProtocolVersionMax, IsLeader: m.ID == p.n.cfg.NodeID,
			// Autopilot counts the voters its removal rules protect from
			// this field of these very entries, not from its own state.
			NodeType: autopilot.NodeVoter,
		}
	}
	return out
}

// FetchServerStats asks each live node for its meta group's state.
func (p *pilot) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	var mu sync.Mutex
	out := map[raft.ServerID]*autopilot.ServerStats{}
	var wg sync.WaitGroup
	for id, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st Status
			if string(id) == p.n.cfg.NodeID {
				st = p.n.Status()
			} else {
				var err error
				if st, err = p.n.remoteStatus(ctx, string(srv.Address)); err != nil {
					return
				}
				p.seen(string(id))
			}
			for _, g := range st.Groups {
				if g.Name == MetaGroup {
					mu.Lock()
					out[id] = &autopilot.ServerStats{LastContact: time.Duration(max(g.LastContactMs, 0)) * time.Millisecond,
						LastTerm: g.Term, LastIndex: g.LastLogIndex}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// RemoveFailedServer runs Leave for a node autopilot may remove, in the
// background (autopilot wants an immediate return), once at a time per node.
func (p *pilot) RemoveFailedServer(srv *autopilot.Server) {
	id := string(srv.ID)
	p.mu.Lock()
	if p.removing[id] {
		p.mu.Unlock()
		return
	}
	p.removing[id] = true
	p.mu.Unlock()
	n := p.n
	n.goFunc(func() {
		defer func() {
			p.mu.Lock()
			delete(p.removing, id)
			p.mu.Unlock()
		}()
		n.logger.Warn("removing a dead node from every group", "id", id,
			"unreachable_for", time.Since(p.since(id)).Round(time.Second), "dead_node_timeout", n.cfg.DeadNodeTimeout)
		ctx, cancel := context.WithTimeout(context.Background(), deadNodeLeaveTimeout)
		defer cancel()
		if err := n.Leave(ctx, id); err != nil {
			n.logger.Error("could not remove a dead node", "id", id, "error", err)
			return
		}
		n.deadNodesRemoved.Add(1)
		n.logger.Warn("removed a dead node", "id", id)
	})
}

// deadNodeLeaveTimeout bounds one removal.
const deadNodeLeaveTimeout = time.Minute

// health is what the running autopilot knows of id, or nil when this node
// does not lead meta.
func (n *Node) health(id string) *MemberHealth {
	p := n.pilot.Load()
	if p == nil {
		return nil
	}
	h := &MemberHealth{Status: string(autopilot.NodeAlive), LastSeenMs: time.Since(p.since(id)).Milliseconds()}
	if p.failed(id) {
		h.Status = string(autopilot.NodeFailed)
	}
	// Not GetServerHealth: it dereferences the state, which is nil until
	// autopilot's first update.
	if state := p.ap.GetState(); state != nil {
		if s, ok := state.Servers[raft.ServerID(id)]; ok {
			h.Healthy, h.StableSince = s.Health.Healthy, s.Health.StableSince
		}
	}
	return h
}

// keepMembership is autopilot's promoter for raftkv: it reports every
// server as a voter-to-be, changes no one's suffrage, and passes on only
// the failed servers for removal (not the stale ones; see above).
type keepMembership struct{ autopilot.StablePromoter }

func (*keepMembership) CalculatePromotionsAndDemotions(*autopilot.Config, *autopilot.State) autopilot.RaftChanges {
	return autopilot.RaftChanges{}
}

func (*keepMembership) FilterFailedServerRemovals(_ *autopilot.Config, _ *autopilot.State, f *autopilot.FailedServers) *autopilot.FailedServers {
	return &autopilot.FailedServers{FailedVoters: f.FailedVoters, FailedNonVoters: f.FailedNonVoters}
}
