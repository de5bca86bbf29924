package cluster

import (
	"context"

	"github.com/hashicorp/raft"
)

// Planned leadership moves: balancing, the transfer API, leave and a
// graceful stop all go through handOver, so none of them fails a write in
// flight.

// handOver moves this group's leadership to target (any voter when target
// is ""), without failing the writes in flight: it first stops new
// proposals and waits for those under way to be answered, and only then asks
// raft for the transfer. Proposals that arrive meanwhile wait, find this node
// no longer leading, and are routed to the new leader.
func (g *group) handOver(target string, addr raft.ServerAddress) error {
	g.handover.Lock()
	defer g.handover.Unlock()
	if !g.isLeader() {
		return errNotLeader
	}
	g.noteTransfer()
	var f raft.Future
	if target == "" {
		f = g.raft.LeadershipTransfer()
	} else {
		f = g.raft.LeadershipTransferToServer(raft.ServerID(target), addr)
	}
	return f.Error()
}

// HandOffLeadership hands every group this node leads to another voter, for
// a planned stop: the writes in flight finish first (group.handOver), and the
// requests that follow go to the new leaders instead of waiting for an
// election. Groups this node is the only voter of stay put. It gives up on a
// group when ctx ends.
func (n *Node) HandOffLeadership(ctx context.Context) {
	for _, name := range n.order {
		g := n.groups[name]
		if !g.isLeader() || ctx.Err() != nil {
			continue
		}
		conf, _, err := g.configuration()
		if err != nil || countVoters(conf) < 2 {
			continue
		}
		if err := g.handOver("", ""); err != nil {
			n.logger.Warn("handing leadership over before stopping failed", "group", name, "error", err)
			continue
		}
		n.logger.Info("handed leadership over before stopping", "group", name, "leader", g.leaderID())
	}
}

func countVoters(conf raft.Configuration) int {
	v := 0
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			v++
		}
	}
	return v
}
