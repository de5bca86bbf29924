package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Follower progress, as a group's leader sees it (GroupStatus.Followers).
// hashicorp/raft v1.7.3 keeps each follower's match index and last contact
// to itself, so the leader puts together what it can learn:
//
//   - contact, from raft's heartbeat observations: a failed heartbeat
//     (FailedHeartbeatObservation) carries the time of the follower's last
//     answer to the leader's replication, and ResumedHeartbeatObservation
//     ends the failure. While none fails, the follower answered within a
//     heartbeat interval (HeartbeatTimeout/10);
//   - how far the follower has got, from the follower: every
//     followerPollInterval the node asks each follower of the groups it
//     leads for its status (the "status" call that Overview also makes)
//     and keeps, per group, the follower's last log index and its own at
//     that moment.
//
// Raft's observer channel does not block raft, so an observation can be
// lost; a follower's status that shows it heard from this leader within a
// heartbeat timeout also ends a failure, so a lost "resumed" is mended by
// the next poll.

// followerPollInterval is how often a leader asks its followers how far
// they have got.
const followerPollInterval = time.Second

// FollowerProgress is one member of a group as the group's leader sees it.
type FollowerProgress struct {
	ID    string `json:"id"`
	Voter bool   `json:"voter"`
	// Reachable: the leader's heartbeats to it succeed. False once one
	// failed and none has succeeded since.
	Reachable bool `json:"reachable"`
	// LastContactMs is how long ago the leader last heard from it: 0 while
	// heartbeats succeed, else the time since its last answer, which grows
	// while it is down.
	LastContactMs int64 `json:"last_contact_ms"`
	// MatchIndex is its last log index of the group when it last reported
	// it, and LagEntries the leader's last index minus that: the leader's
	// index at the report for a reachable follower, its index now for an
	// unreachable one (so the lag of a dead follower grows with every
	// write). LagEntries is -1 until the follower has reported once.
	MatchIndex uint64 `json:"match_index"`
	LagEntries int64  `json:"lag_entries"`
	// ReportAgeMs is how old that report is (-1: none yet).
	ReportAgeMs int64 `json:"report_age_ms"`
}

// followerReports are the followers' last answers to this node's polls.
type followerReports struct {
	mu      sync.Mutex
	byGroup map[string]map[string]followerReport // group → follower id →
}

type followerReport struct {
	at          time.Time // when it answered
	index       uint64    // its last log index of the group
	leaderIndex uint64    // this node's last log index of the group then
}

func (p *followerReports) record(group, id string, r followerReport) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byGroup == nil {
		p.byGroup = map[string]map[string]followerReport{}
	}
	if p.byGroup[group] == nil {
		p.byGroup[group] = map[string]followerReport{}
	}
	p.byGroup[group][id] = r
}

func (p *followerReports) get(group, id string) (followerReport, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.byGroup[group][id]
	return r, ok
}

// heartbeatFailures are the followers whose heartbeats from this node, as
// the group's leader, fail: raft's time of their last answer. A group owns
// one; watchLeaders feeds it.
type heartbeatFailures struct {
	mu    sync.Mutex
	since map[string]time.Time
}

// observe takes the raft observations about heartbeats and leadership.
func (h *heartbeatFailures) observe(o raft.Observation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch d := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		if h.since == nil {
			h.since = map[string]time.Time{}
		}
		h.since[string(d.PeerID)] = d.LastContact
	case raft.ResumedHeartbeatObservation:
		delete(h.since, string(d.PeerID))
	case raft.RaftState:
		// Each leadership replicates afresh (and says "resumed" only
		// after a failure of its own): what the last one saw is void.
		h.since = nil
	}
}

func (h *heartbeatFailures) resumed(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.since, id)
}

// failing returns raft's last contact with id while its heartbeats fail.
func (h *heartbeatFailures) failing(id string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.since[id]
	return t, ok
}

// progressLoop polls the followers of the groups this node leads every
// followerPollInterval until stop closes. Owned by the node.
func (n *Node) progressLoop() {
	t := time.NewTicker(followerPollInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		n.pollFollowers()
	}
}

// pollFollowers asks every follower of a group this node leads for its
// status, at once, and records how far each has got in those groups.
func (n *Node) pollFollowers() {
	peers := map[string]string{} // follower id → raft address
	for _, name := range n.order {
		g := n.groups[name]
		if !g.isLeader() {
			continue
		}
		conf, _, err := g.configuration()
		if err != nil {
			continue
		}
		for _, s := range conf.Servers {
			if string(s.ID) != n.cfg.NodeID {
				peers[string(s.ID)] = string(s.Address)
			}
		}
	}
	if len(peers) == 0 || n.rpc == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for id, addr := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := n.remoteStatus(ctx, addr)
			if err != nil || st.Node != id || st.ClusterID != n.clusterID {
				return
			}
			at := time.Now()
			for _, fs := range st.Groups {
				g := n.groups[fs.Name]
				if g == nil || !g.isLeader() {
					continue
				}
				n.progress.record(fs.Name, id, followerReport{at: at, index: fs.LastLogIndex, leaderIndex: g.raft.LastIndex()})
				if fs.Leader == n.cfg.NodeID && fs.LastContactMs >= 0 && time.Duration(fs.LastContactMs)*time.Millisecond < n.cfg.HeartbeatTimeout {
					g.heartbeats.resumed(id) // it hears this leader: a "resumed" may have been lost
				}
			}
		}()
	}
	wg.Wait()
}

// followers is the progress of every other member of g, which this node
// leads.
func (n *Node) followers(g *group) []FollowerProgress {
	conf, _, err := g.configuration()
	if err != nil {
		return nil
	}
	last, now := g.raft.LastIndex(), time.Now()
	out := []FollowerProgress{}
	for _, s := range conf.Servers {
		id := string(s.ID)
		if id == n.cfg.NodeID {
			continue
		}
		f := FollowerProgress{ID: id, Voter: s.Suffrage == raft.Voter, Reachable: true, LagEntries: -1, ReportAgeMs: -1}
		if lc, failing := g.heartbeats.failing(id); failing {
			f.Reachable, f.LastContactMs = false, now.Sub(lc).Milliseconds()
		}
		if r, ok := n.progress.get(g.name, id); ok {
			ref := r.leaderIndex
			if !f.Reachable {
				ref = last
			}
			f.MatchIndex, f.LagEntries = r.index, int64(ref-min(r.index, ref))
			f.ReportAgeMs = now.Sub(r.at).Milliseconds()
		}
		out = append(out, f)
	}
	return out
}
