package cluster

import (
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/mux"
)

// Early elections: telling a dead leader from a slow one.
//
// The raft timeouts must be long enough that a busy leader on a loaded
// machine is never mistaken for a dead one, yet a leader that really died
// should be replaced in well under a second. A silent leader cannot be told
// apart from a slow one, but a crashed process can: the kernel closes its
// connections and its raft port refuses new ones. So when a connection from
// a group's leader ends, the node probes the leader's raft port. If it
// refuses, the leader is gone, and the node starts an election at once by
// sending itself raft's TimeoutNow, the message a leader sends its successor
// in a leadership transfer. The vote request that follows carries the
// transfer flag, so the other followers vote without first waiting for their
// own heartbeat timeout (which they would otherwise do, still trusting the
// dead leader); every other rule of the vote holds, so only a candidate with
// an up-to-date log can win. Survivors stand in order of id, a little apart,
// so they do not split the vote; when the first has the shorter log and
// loses, the next one wins. A paused or cut-off leader keeps its port open
// and is replaced by the ordinary heartbeat timeout.

const (
	// earlyElectionStagger separates the survivors' early elections so they
	// do not split the vote.
	earlyElectionStagger = 50 * time.Millisecond
	// earlyElectionWindow is how long after an early election a candidacy
	// is put down to it.
	earlyElectionWindow = 5 * time.Second
	leaderProbeTimeout  = 250 * time.Millisecond
	leaderProbes        = 6
	leaderProbeGap      = 20 * time.Millisecond
)

// failfast tracks the early elections under way on this node.
type failfast struct {
	probing busySet // leader addresses being probed
	active  busySet // groups with an early election under way
}

// busySet holds the keys some goroutine is working on, so a second one
// does not start the same work. The zero value is ready to use.
type busySet struct {
	mu   sync.Mutex
	keys map[string]bool
}

// claim marks key busy; false if it already was.
func (b *busySet) claim(key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys[key] {
		return false
	}
	if b.keys == nil {
		b.keys = map[string]bool{}
	}
	b.keys[key] = true
	return true
}

func (b *busySet) release(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.keys, key)
}

// watchPeers asks the mux to report connections whose peer went away. Called
// once every group is open, so the callback never sees a half-built node.
func (n *Node) watchPeers() {
	if n.mux == nil {
		return
	}
	n.mux.OnPeerGone(func(group string) {
		n.goFunc(func() { n.peerGone(group) })
	})
}

// peerGone runs when a connection of group ended from the far side.
func (n *Node) peerGone(group string) {
	g, ok := n.groups[group]
	if !ok || g.raft.State() != raft.Follower {
		return
	}
	addr, id := g.raft.LeaderWithID()
	if addr == "" || string(id) == n.cfg.NodeID {
		return
	}
	if !n.failfast.probing.claim(string(addr)) {
		return // another connection's end already asked
	}
	// A dying process closes its connections and its listener one after
	// the other, so the port may still accept for a moment: look again a
	// few times before calling the leader alive.
	refused := false
	for i := 0; i < leaderProbes && !refused; i++ {
		if i > 0 && !n.sleepOrStop(leaderProbeGap) {
			break
		}
		refused = mux.ProbeRefused(string(addr), leaderProbeTimeout)
	}
	n.failfast.probing.release(string(addr))
	n.logger.Debug("a connection of the leader ended", "group", group, "leader", id, "port_refused", refused)
	if !refused {
		return
	}
	n.logger.Info("leader's raft port refuses connections: its process is gone, electing early",
		"leader", id, "address", addr)
	for _, name := range n.order {
		h := n.groups[name]
		if a, lid := h.raft.LeaderWithID(); a == addr && h.raft.State() == raft.Follower && n.failfast.active.claim(name) {
			n.goFunc(func() {
				defer n.failfast.active.release(name)
				n.electEarly(h, string(lid))
			})
		}
	}
}

// electEarly makes this follower of g stand for election now, because g's
// leader dead is known to have died; survivors of lower id go first.
func (n *Node) electEarly(g *group, dead string) {
	rank := earlyRank(g, n.cfg.NodeID, dead)
	if rank < 0 {
		return // not a voter: cannot stand
	}
	if rank > 0 {
		t := time.NewTimer(time.Duration(rank) * earlyElectionStagger)
		defer t.Stop()
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
	if l := g.leaderID(); (l != "" && l != dead) || g.raft.State() != raft.Follower {
		return // another survivor won, or an election is under way
	}
	g.noteEarlyElection()
	n.logger.Info("early election: standing", "group", g.name, "dead_leader", dead, "rank", rank)
	req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax,
		ID:              []byte(n.cfg.NodeID),
		Addr:            []byte(n.cfg.RaftAddr),
	}}
	if err := g.trans.TimeoutNow(raft.ServerID(n.cfg.NodeID), raft.ServerAddress(n.cfg.RaftAddr), req, &raft.TimeoutNowResponse{}); err != nil {
		n.logger.Warn("early election: could not start", "group", g.name, "error", err)
	}
}

// earlyRank is this node's place among g's voters other than the dead
// leader, by id: the order in which they stand.
func earlyRank(g *group, self, dead string) int {
	conf, _, err := g.configuration()
	if err != nil {
		return -1
	}
	var ids []string
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != dead {
			ids = append(ids, string(s.ID))
		}
	}
	slices.Sort(ids)
	return slices.Index(ids, self)
}
