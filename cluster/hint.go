package cluster

// LeaderHint names the leader of group as this node knows it, with that
// leader's HTTP address from the node registry, so that an answer which
// could not be served for want of a reachable leader can still tell a
// client where to go. It reads local state only and never waits: it is
// meant for error paths, where the node has already spent the request's
// deadline. id is "" when no leader is known or the group does not exist;
// httpAddr is "" when the registry does not (yet) list the leader.
func (n *Node) LeaderHint(group string) (id, httpAddr string) {
	g, ok := n.groups[group]
	if !ok {
		return "", ""
	}
	id = g.leaderID()
	if id == "" {
		return "", ""
	}
	if nd, ok := n.meta.reg.Node(id); ok {
		httpAddr = nd.HTTPAddr
	}
	return id, httpAddr
}
