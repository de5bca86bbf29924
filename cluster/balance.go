package cluster

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// Leader balancing. A freshly built cluster has one node leading every
// group (it bootstrapped them all), and failovers pile leaderships up on the
// survivors; a node that leads everything takes every shard down with it
// when it dies. Every BalanceInterval each node looks at who leads what, as
// it sees it, and if it leads at least two groups more than some other
// voter that is ready, hands one of its groups to that voter. One transfer
// per node per round, and only between nodes that differ by two or more, so
// the cluster settles instead of oscillating.

// balanceLoop runs until the node stops. Owned by the node.
func (n *Node) balanceLoop() {
	if n.cfg.BalanceInterval <= 0 {
		return
	}
	for n.sleepOrStop(n.cfg.BalanceInterval) {
		n.balanceOnce()
	}
}

// balanceOnce moves at most one leadership off this node.
func (n *Node) balanceOnce() {
	if ok, _ := n.Ready(); !ok {
		return
	}
	counts := map[string]int{}
	conf, _, err := n.meta.configuration()
	if err != nil {
		return
	}
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			counts[string(s.ID)] = 0
		}
	}
	var mine []*group
	for _, name := range n.order {
		g := n.groups[name]
		leader := g.leaderID()
		if _, ok := counts[leader]; ok {
			counts[leader]++
		}
		if leader == n.cfg.NodeID {
			mine = append(mine, g)
		}
	}
	// Candidates: the voters leading the fewest groups, least loaded first
	// (ties by id, so every node reasons the same way).
	var ids []string
	for id := range counts {
		if id != n.cfg.NodeID {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(a, b int) bool {
		if counts[ids[a]] != counts[ids[b]] {
			return counts[ids[a]] < counts[ids[b]]
		}
		return ids[a] < ids[b]
	})
	for _, target := range ids {
		if len(mine)-counts[target] < 2 {
			return
		}
		if !n.peerReady(target) {
			continue
		}
		g := mine[len(mine)-1] // the last shard: meta moves only when nothing else can
		if !g.isMember(target, true) {
			continue
		}
		addr := n.raftAddrOf(g, target)
		if addr == "" {
			continue
		}
		if err := g.handOver(target, addr); err != nil {
			g.logger.Debug("leader balancing: transfer failed", "to", target, "error", err)
			return
		}
		g.logger.Info("leader balancing: moved leadership", "to", target, "this_node_led", len(mine), "target_led", counts[target])
		return
	}
}

// peerReady asks another node whether it is ready (every group led, caught
// up): a transfer to a node that is down or behind would stall the group's
// writes until it times out.
func (n *Node) peerReady(id string) bool {
	addr := n.raftAddrOf(n.meta, id)
	if addr == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var r readiness
	_, err := n.rpc.call(ctx, string(addr), MetaGroup, "ready", struct{}{}, &r)
	return err == nil && r.Ready
}

// raftAddrOf returns id's raft address in g's configuration.
func (n *Node) raftAddrOf(g *group, id string) raft.ServerAddress {
	conf, _, err := g.configuration()
	if err != nil {
		return ""
	}
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			return s.Address
		}
	}
	return ""
}
