package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Removed nodes. A node taken out of the cluster (a leave, a dead-node
// cleanup, an outage recovery that left it out) keeps its data dir and may
// keep running, but nothing replicates to it any more: its replicas are
// stale and stay so. It notices, says so (Ready, Status.Removed, the log)
// and serves nothing from them: every operation answers ErrRemoved
// (route.go, and the HTTP layer for the stale reads, which never route).
//
// How it learns it (removalLoop, every removalCheckInterval):
//
//   - from its own replicas: a group whose configuration is known (not
//     empty) and does not list this node, and whose leader it no longer
//     hears from. A leader stops replicating to a removed member only
//     after sending it the entry that removes it, so a node that was up
//     sees the change, and its log keeps it across restarts;
//   - from a peer: a node removed while it was down (or cut off) never
//     receives that entry, and its own replicas still list it. When its
//     meta replica lists it but has known no leader for removalAskAfter, it
//     asks the other members of its meta configuration for their status;
//     one of the same cluster that leads meta and does not list this node
//     settles it. The node then stops its groups' raft (stopGroups), which
//     would otherwise keep asking the members for votes they refuse.
//
// What it is not: a node that has not joined yet (its groups know no
// configuration at all), and a node of a restored cluster (another cluster
// id: the peer is not asked about this cluster's members). A node removed
// while cut off, which can reach no peer that leads meta, cannot tell
// removal from a partition and keeps saying what it does today ("meta has
// no leader").

// Removal says how this node knows it is no longer a member
// (Status.Removed). It is nil while the node is a member.
type Removal struct {
	// Groups are the groups whose configuration does not list this node
	// (every group once a leave has finished).
	Groups []string `json:"groups"`
	// Evidence is "configuration" when this node's own replicas show the
	// change, "peer" when Peer, the leader of meta, does not list it.
	Evidence string `json:"evidence"`
	Peer     string `json:"peer,omitempty"`
	// Since is when this node found out.
	Since time.Time `json:"since"`
	// Message says what happened and what to do.
	Message string `json:"message"`
}

const (
	evidenceConfiguration = "configuration"
	evidencePeer          = "peer"
	// removalCheckInterval is how often removalLoop looks.
	removalCheckInterval = 500 * time.Millisecond
	// removalAskEvery is how often it asks the peers while meta has no
	// leader.
	removalAskEvery = 2 * time.Second
)

// removalAskAfter is how long meta must have had no leader, as this node
// sees it, before it asks its peers whether it is still a member.
func (n *Node) removalAskAfter() time.Duration {
	return max(3*n.cfg.HeartbeatTimeout, 2*time.Second)
}

// CheckMember is nil while this node is a member of the cluster, and an
// ErrRemoved error saying what to do once it has been removed.
func (n *Node) CheckMember() error {
	if r := n.removal.Load(); r != nil {
		return fmt.Errorf("%w: %s", ErrRemoved, r.Message)
	}
	return nil
}

// removedFrom returns the groups whose known configuration does not list
// this node and whose leader it no longer hears from, in group order. A
// node that catches up (a rejoin after a wipe) can hold, for a moment, a
// configuration from before it was added again, taken from a checkpoint
// or the middle of the log, but it hears from the leader all along; a
// removed node never again.
func (n *Node) removedFrom() []string {
	var out []string
	for _, name := range n.order {
		g := n.groups[name]
		if g.hasConfiguration() && !g.isMember(n.cfg.NodeID, false) && !g.hearsFromLeader(n.cfg.NodeID, n.cfg.HeartbeatTimeout) {
			out = append(out, name)
		}
	}
	return out
}

// hearsFromLeader reports whether another node leads g and this replica
// heard from it within the heartbeat timeout.
func (g *group) hearsFromLeader(self string, heartbeat time.Duration) bool {
	leader := g.leaderID()
	lc := g.raft.LastContact()
	return leader != "" && leader != self && !lc.IsZero() && time.Since(lc) < heartbeat
}

// removalMessage is the one sentence a removed node says, with the way back.
func (n *Node) removalMessage(groups []string, evidence, peer string) string {
	var what string
	switch {
	case evidence == evidencePeer:
		what = fmt.Sprintf("%s, the leader of %s, does not list this node (%s): it was removed while it was down or cut off (a leave, a dead-node cleanup or an outage recovery)",
			peer, MetaGroup, n.cfg.NodeID)
	case slices.Contains(groups, MetaGroup):
		what = fmt.Sprintf("this node (%s) is no longer in the configuration of %s: it left, or was removed as dead", n.cfg.NodeID, strings.Join(groups, ", "))
	default:
		what = fmt.Sprintf("this node (%s) was removed from %s but is still in %s: a leave in progress or cut short (repeat it)",
			n.cfg.NodeID, strings.Join(groups, ", "), MetaGroup)
	}
	return what + "; its data is no longer replicated and is not served. " +
		"To bring it back, stop it, wipe its data dir and start it with --join HOST:PORT (the HTTP address of a member): it joins as a new node"
}

// removalLoop keeps n.removal up to date until stop closes. Owned by the
// node.
func (n *Node) removalLoop() {
	var (
		pending     []string  // groups seen without this node once; confirmed on the next look
		leaderSeen  time.Time // last time meta had a leader, as this node sees it
		lastAsked   time.Time
		start       = time.Now()
		tick        = time.NewTicker(removalCheckInterval)
		askedResult chan *Removal
	)
	defer tick.Stop()
	leaderSeen = start
	for {
		select {
		case <-n.stop:
			return
		case r := <-askedResult:
			askedResult = nil
			if r != nil && n.removal.Load() == nil && n.meta.leaderID() == "" && len(n.removedFrom()) == 0 {
				n.setRemoval(r)
				n.stopGroups()
			}
			continue
		case <-tick.C:
		}
		if n.meta.leaderID() != "" {
			leaderSeen = time.Now()
		}
		groups := n.removedFrom()
		cur := n.removal.Load()
		switch {
		case len(groups) > 0:
			// A configuration without this node can be a moment's state
			// (a member moved to a new address is removed, then added
			// again at once): believe it once it lasted one look.
			if slices.Equal(groups, pending) && (cur == nil || cur.Evidence != evidenceConfiguration || !slices.Equal(cur.Groups, groups)) {
				n.setRemoval(&Removal{Groups: groups, Evidence: evidenceConfiguration, Since: time.Now(),
					Message: n.removalMessage(groups, evidenceConfiguration, "")})
			}
			pending = groups
			continue
		case cur != nil && cur.Evidence == evidencePeer && n.meta.leaderID() == "":
			// Still no leader: the peer's word stands.
		case cur != nil:
			n.setRemoval(nil)
		case askedResult == nil && time.Since(leaderSeen) >= n.removalAskAfter() && time.Since(lastAsked) >= removalAskEvery:
			lastAsked = time.Now()
			askedResult = make(chan *Removal, 1)
			ch := askedResult
			n.goFunc(func() { ch <- n.askPeersAboutRemoval() })
		}
		pending = nil
	}
}

// setRemoval records a change of membership and logs it once.
func (n *Node) setRemoval(r *Removal) {
	old := n.removal.Swap(r)
	switch {
	case r != nil:
		n.logger.Warn("removed from the cluster: "+r.Message, "groups", strings.Join(r.Groups, ","), "evidence", r.Evidence, "data_dir", n.cfg.DataDir)
	case old != nil:
		n.logger.Info("this node is a member of the cluster again", "groups_before", strings.Join(old.Groups, ","))
	}
}

// stopGroups shuts down every group's raft on a node that a peer says was
// removed. Its replicas still list it, so they would go on standing for
// election, and every member would refuse the vote with a warning, each
// election timeout, for as long as the node runs. Its HTTP API and its
// node-to-node calls stay up, to say what happened; the groups' state on
// disk is untouched, and a restart opens them again (and asks again).
func (n *Node) stopGroups() {
	for _, name := range n.order {
		if err := n.groups[name].close(); err != nil {
			n.logger.Warn("stopping the raft of a group of a removed node", "group", name, "error", err)
		}
	}
	n.logger.Info("stopped raft in every group: this node was removed and takes no part any more")
}

// askPeersAboutRemoval asks the other members of this node's meta
// configuration for their status, and returns a Removal if one of them, of
// this cluster, leads meta and does not list this node.
func (n *Node) askPeersAboutRemoval() *Removal {
	conf, _, err := n.meta.configuration()
	if err != nil || n.rpc == nil {
		return nil
	}
	self := raft.ServerID(n.cfg.NodeID)
	if !slices.ContainsFunc(conf.Servers, func(s raft.Server) bool { return s.ID == self }) {
		return nil // not a member as its own replica sees it: nothing to ask
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var (
		mu    sync.Mutex
		found *Removal
		wg    sync.WaitGroup
	)
	for _, s := range conf.Servers {
		if s.ID == self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := n.remoteStatus(ctx, string(s.Address))
			if err != nil || st.ClusterID != n.clusterID {
				return // unreachable, or of another cluster (a restore): proves nothing
			}
			for _, g := range st.Groups {
				if g.Name != MetaGroup || g.State != raft.Leader.String() {
					continue
				}
				if slices.Contains(g.Voters, n.cfg.NodeID) || slices.Contains(g.Nonvoters, n.cfg.NodeID) {
					return
				}
				mu.Lock()
				if found == nil {
					found = &Removal{Groups: n.groupNames(), Evidence: evidencePeer, Peer: st.Node, Since: time.Now(),
						Message: n.removalMessage(nil, evidencePeer, st.Node)}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return found
}
