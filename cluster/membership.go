package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/registry"
)

// Membership. Join registers the node in the meta group, then adds it to
// every group as a non-voter, waits until it has caught up, and promotes it
// to voter. Leave moves leadership off the node, removes it from every shard,
// drops it from the registry and finally removes it from the meta group.
// Every step is idempotent, so a failed join or leave is simply retried.

type initArgs struct {
	ClusterID string `json:"cluster_id"`
	Shards    int    `json:"shards"`
}

type idArgs struct {
	ID string `json:"id"`
}

type transferArgs struct {
	To string `json:"to"`
}

// TransferResult names the leader of a group after a transfer.
type TransferResult struct {
	Group  string `json:"group"`
	Leader string `json:"leader"`
}

// ClusterInfo is what a joining node needs to know before it opens its groups.
type ClusterInfo struct {
	ClusterID string `json:"cluster_id"`
	Shards    int    `json:"shards"`
}

// validateMember checks a join request.
func validateMember(m registry.Node) error {
	if !nodeIDPattern.MatchString(m.ID) {
		return fmt.Errorf("%w: node id %q: use 1-64 letters, digits, '.', '_' or '-'", ErrBadRequest, m.ID)
	}
	if m.Incarnation != "" && !nodeIDPattern.MatchString(m.Incarnation) {
		return fmt.Errorf("%w: incarnation %q: use 1-64 letters, digits, '.', '_' or '-'", ErrBadRequest, m.Incarnation)
	}
	for name, addr := range map[string]string{"raft_addr": m.RaftAddr, "http_addr": m.HTTPAddr} {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return fmt.Errorf("%w: %s %q must be host:port", ErrBadRequest, name, addr)
		}
	}
	return nil
}

// Join adds a node to every group as a voter. It returns once the node is a
// voter everywhere. Joining again with the same addresses changes nothing; a
// known id with new addresses moves the node to them.
func (n *Node) Join(ctx context.Context, m registry.Node) error {
	if err := validateMember(m); err != nil {
		return err
	}
	if err := n.removeReplaced(ctx, m); err != nil {
		return err
	}
	if _, _, err := route(ctx, n, MetaGroup, "register", m, n.registerLocal, idempotent); err != nil {
		return err
	}
	for _, name := range n.order {
		if _, _, err := route(ctx, n, name, "add-member", m, n.addMemberLocal, idempotent); err != nil {
			return fmt.Errorf("add %s to %s: %w", m.ID, name, err)
		}
	}
	n.logger.Info("node joined", "id", m.ID, "raft_addr", m.RaftAddr, "http_addr", m.HTTPAddr)
	return nil
}

// Leave removes a node from every group and from the registry. The node may
// be down. Leadership is moved off it first.
func (n *Node) Leave(ctx context.Context, id string) error {
	_, registered := n.meta.reg.Node(id)
	member := false
	for _, name := range n.order {
		member = member || n.groups[name].isMember(id, false)
	}
	if !registered && !member {
		return fmt.Errorf("%w: no node %q in this cluster", ErrNotFound, id)
	}
	for _, name := range n.order[1:] {
		if _, _, err := route(ctx, n, name, "remove-member", idArgs{id}, n.removeMemberLocal, idempotent); err != nil {
			return fmt.Errorf("remove %s from %s: %w", id, name, err)
		}
	}
	if _, _, err := route(ctx, n, MetaGroup, "deregister", idArgs{id}, n.deregisterLocal, idempotent); err != nil {
		return err
	}
	if _, _, err := route(ctx, n, MetaGroup, "remove-member", idArgs{id}, n.removeMemberLocal, idempotent); err != nil {
		return fmt.Errorf("remove %s from %s: %w", id, MetaGroup, err)
	}
	n.logger.Info("node left", "id", id)
	return nil
}

// TransferLeadership moves the leadership of a group to `to`, or to the most
// up-to-date other voter when `to` is empty.
func (n *Node) TransferLeadership(ctx context.Context, groupName, to string) (TransferResult, error) {
	g, ok := n.groups[groupName]
	if !ok {
		return TransferResult{}, fmt.Errorf("%w: no group %q", ErrNotFound, groupName)
	}
	if to != "" && !g.isMember(to, true) {
		return TransferResult{}, fmt.Errorf("%w: %q is not a voter of %s", ErrNotFound, to, groupName)
	}
	res, _, err := route(ctx, n, groupName, "transfer", transferArgs{to}, n.transferLocal, idempotent)
	return res, err
}

func (n *Node) initLocal(ctx context.Context, g *group, a initArgs) (bool, error) {
	return n.applyRegistry(ctx, g, registry.EncodeInit(a.ClusterID, a.Shards))
}

// removeReplaced runs before a join is registered. A node known to the
// cluster that asks to join with another incarnation lost the data it had
// (its data dir was wiped or replaced): it is removed from every group
// before its new incarnation is recorded. Until then every peer refuses its
// raft connections (incarnation.go), and after, it is in no group and is
// added as any new node is, so at no point can it vote or count towards a
// quorum with promises it no longer holds. A node registered without an
// incarnation (by an older raftkv) and still a member is treated the same.
// This node's registry replica decides whether to remove; the meta leader
// checks again when the new incarnation is recorded (registerLocal).
func (n *Node) removeReplaced(ctx context.Context, m registry.Node) error {
	cur, ok := n.meta.reg.Node(m.ID)
	if m.Incarnation == "" || !ok || cur.Incarnation == m.Incarnation {
		return nil
	}
	n.logger.Warn("a known node asks to join with new data (its data dir was wiped or replaced): removing it from every group before adding it again",
		"id", m.ID, "incarnation", m.Incarnation, "known_incarnation", cur.Incarnation)
	groups := append(append([]string(nil), n.order[1:]...), MetaGroup) // shards, then meta, as Leave does
	for _, name := range groups {
		if _, _, err := route(ctx, n, name, "remove-member", idArgs{m.ID}, n.removeMemberLocal, idempotent); err != nil {
			return fmt.Errorf("remove the replaced %s from %s: %w", m.ID, name, err)
		}
	}
	return nil
}

// registerLocal records a node. A new incarnation for a node whose recorded
// one differs is taken only once the node is in no group, as this leader's
// replicas see them (removeReplaced runs first).
func (n *Node) registerLocal(ctx context.Context, g *group, m registry.Node) (bool, error) {
	if cur, ok := g.reg.Node(m.ID); ok && m.Incarnation != "" && cur.Incarnation != "" && cur.Incarnation != m.Incarnation {
		for _, name := range n.order {
			if n.groups[name].isMember(m.ID, false) {
				return false, fmt.Errorf("%w: %s is known by incarnation %s and still a member of %s; it is removed from every group before its new incarnation %s is recorded",
					ErrConflict, m.ID, cur.Incarnation, name, m.Incarnation)
			}
		}
	}
	return n.applyRegistry(ctx, g, registry.EncodeUpsertNode(m))
}

func (n *Node) deregisterLocal(ctx context.Context, g *group, a idArgs) (bool, error) {
	changed, err := n.applyRegistry(ctx, g, registry.EncodeRemoveNode(a.ID))
	if errors.Is(err, registry.ErrUnknownNode) {
		return false, nil
	}
	return changed, err
}

// applyRegistry proposes a registry entry and maps the registry's verdict
// to this package's errors.
func (n *Node) applyRegistry(ctx context.Context, g *group, cmd []byte) (bool, error) {
	if g.reg == nil {
		return false, fmt.Errorf("%w: %s holds no registry", ErrBadRequest, g.name)
	}
	resp, err := g.apply(ctx, cmd)
	if err != nil {
		return false, err
	}
	r, ok := resp.(*registry.Result)
	if !ok {
		return false, fmt.Errorf("unexpected registry response %T", resp)
	}
	switch {
	case r.Err == nil:
		return r.Changed, nil
	case errors.Is(r.Err, registry.ErrNotFound), errors.Is(r.Err, registry.ErrUnknownNode):
		return false, fmt.Errorf("%w: %w", ErrNotFound, r.Err)
	case errors.Is(r.Err, registry.ErrInvalid), errors.Is(r.Err, registry.ErrMalformed), errors.Is(r.Err, registry.ErrShardCommand):
		return false, fmt.Errorf("%w: %w", ErrBadRequest, r.Err)
	}
	return false, fmt.Errorf("%w: %w", ErrConflict, r.Err)
}

// addMemberLocal runs on the group's leader: add as non-voter, wait for the
// new member to catch up, then promote it. A member known under a different
// address is removed first.
func (n *Node) addMemberLocal(ctx context.Context, g *group, m registry.Node) (bool, error) {
	conf, _, err := g.configuration()
	if err != nil {
		return false, translateRaftError(ctx, err)
	}
	id, addr := raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr)
	present := false
	for _, s := range conf.Servers {
		if s.ID != id {
			continue
		}
		wiped := false
		if s.Address == addr && s.Suffrage == raft.Voter {
			if wiped = n.lostItsState(ctx, g, m); !wiped {
				return false, nil
			}
		}
		if s.Address != addr || wiped {
			if id == raft.ServerID(n.cfg.NodeID) {
				return false, fmt.Errorf("%w: cannot move the leader %s to a new address; transfer leadership first", ErrConflict, id)
			}
			if err := g.raft.RemoveServer(id, 0, timeoutFrom(ctx)).Error(); err != nil {
				return false, translateRaftError(ctx, err)
			}
		} else {
			present = true
		}
	}
	if !present {
		if err := g.raft.AddNonvoter(id, addr, 0, timeoutFrom(ctx)).Error(); err != nil {
			return false, translateRaftError(ctx, err)
		}
	}
	if err := n.waitCaughtUp(ctx, g, m); err != nil {
		return false, err
	}
	if err := g.raft.AddVoter(id, addr, 0, timeoutFrom(ctx)).Error(); err != nil {
		return false, translateRaftError(ctx, err)
	}
	g.logger.Info("member promoted to voter", "id", m.ID, "raft_addr", m.RaftAddr)
	return true, nil
}

// lostItsState reports whether a node listed as a voter asks to join with an
// empty replica of the group (its data dir was wiped before it left). Such a
// voter must not keep counting towards a quorum as if it still held the
// entries it acknowledged, so it is removed and added again from scratch. A
// voter that joined normally has applied the log before its promotion, so its
// applied index is never 0.
func (n *Node) lostItsState(ctx context.Context, g *group, m registry.Node) bool {
	if g.fsm.AppliedIndex() == 0 {
		return false
	}
	applied, err := n.fetchApplied(ctx, m.RaftAddr, g.name)
	if err == nil && applied == 0 {
		g.logger.Warn("member rejoins with an empty replica; removing its old membership first", "id", m.ID)
		return true
	}
	return false
}

// waitCaughtUp polls the new member until its state machine has applied the
// leader's log as it stood when the wait began.
func (n *Node) waitCaughtUp(ctx context.Context, g *group, m registry.Node) error {
	target, err := g.lastAppliableIndex(g.raft.LastIndex())
	if err != nil {
		return err
	}
	for {
		applied, err := n.fetchApplied(ctx, m.RaftAddr, g.name)
		if err == nil && applied >= target {
			return nil
		}
		if !g.isLeader() {
			return errNotLeader
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s did not catch up on %s (at %d of %d, last error: %v)", ErrTimeout, m.ID, g.name, applied, target, err)
		case <-n.stop:
			return fmt.Errorf("%w: node is shutting down", ErrUnavailable)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// removeMemberLocal runs on the group's leader. A leader asked to remove
// itself hands leadership to another voter first and lets the caller retry
// on the new leader.
func (n *Node) removeMemberLocal(ctx context.Context, g *group, a idArgs) (bool, error) {
	conf, _, err := g.configuration()
	if err != nil {
		return false, translateRaftError(ctx, err)
	}
	present, otherVoters := false, 0
	for _, s := range conf.Servers {
		if string(s.ID) == a.ID {
			present = true
		} else if s.Suffrage == raft.Voter {
			otherVoters++
		}
	}
	if !present {
		return false, nil
	}
	if a.ID == n.cfg.NodeID {
		if otherVoters == 0 {
			return false, fmt.Errorf("%w: %s is the last voter of %s", ErrConflict, a.ID, g.name)
		}
		if err := g.handOver("", ""); err != nil {
			return false, translateRaftError(ctx, err)
		}
		return false, errNotLeader
	}
	if err := g.raft.RemoveServer(raft.ServerID(a.ID), 0, timeoutFrom(ctx)).Error(); err != nil {
		return false, translateRaftError(ctx, err)
	}
	g.logger.Info("member removed", "id", a.ID)
	return true, nil
}

func (n *Node) transferLocal(ctx context.Context, g *group, a transferArgs) (TransferResult, error) {
	res := TransferResult{Group: g.name}
	if a.To == n.cfg.NodeID {
		res.Leader = n.cfg.NodeID
		return res, nil
	}
	var addr raft.ServerAddress
	if a.To != "" {
		conf, _, err := g.configuration()
		if err != nil {
			return res, translateRaftError(ctx, err)
		}
		for _, s := range conf.Servers {
			if string(s.ID) == a.To && s.Suffrage == raft.Voter {
				addr = s.Address
			}
		}
		if addr == "" {
			return res, fmt.Errorf("%w: %q is not a voter of %s", ErrNotFound, a.To, g.name)
		}
	}
	if err := g.handOver(a.To, addr); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, errNotLeader) {
			return res, errNotLeader
		}
		return res, fmt.Errorf("%w: leadership transfer: %v", ErrUnavailable, err)
	}
	// The transfer is done once the target won; report who leads now.
	for res.Leader = g.leaderID(); res.Leader == n.cfg.NodeID || res.Leader == ""; res.Leader = g.leaderID() {
		if !n.sleepOrStop(10*time.Millisecond) || ctx.Err() != nil {
			break
		}
	}
	return res, nil
}

// Ready reports whether every group has a leader and this node is a voter
// of each; it says what is missing otherwise (for a removed node, that it
// was removed and how it comes back).
func (n *Node) Ready() (bool, string) {
	if err := n.CheckMember(); err != nil {
		return false, err.Error()
	}
	for _, name := range n.order {
		g := n.groups[name]
		if g.leaderID() == "" {
			return false, name + " has no leader"
		}
		if !g.isMember(n.cfg.NodeID, true) {
			return false, "this node is not a voter of " + name
		}
		// A follower is ready once it has heard from the leader and applied
		// everything the leader said was committed, so a restarted node is
		// not called ready while it still serves old data to stale reads.
		if !g.isLeader() {
			commit := g.raft.CommitIndex()
			if g.raft.LastContact().IsZero() || commit == 0 {
				return false, name + ": no contact with the leader yet"
			}
			if applied := g.raft.AppliedIndex(); applied < commit {
				return false, fmt.Sprintf("%s: catching up (applied %d of %d)", name, applied, commit)
			}
		}
	}
	return true, ""
}

// discover asks the --join addresses for the cluster's shard count.
func (n *Node) discover(ctx context.Context) (ClusterInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.JoinTimeout)
	defer cancel()
	var lastErr error
	for {
		for _, addr := range n.cfg.Join {
			info, err := n.fetchClusterInfo(ctx, addr)
			if err == nil && info.Shards > 0 {
				return info, nil
			}
			if err == nil {
				err = fmt.Errorf("%s has not finished bootstrapping", addr)
			}
			lastErr = err
			n.logger.Warn("cannot reach join address yet", "addr", addr, "error", err)
		}
		select {
		case <-ctx.Done():
			return ClusterInfo{}, fmt.Errorf("no join address answered: %v", lastErr)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// joinURL is the URL of path on a --join address: as given when it names a
// scheme, plain HTTP for a bare host:port.
func joinURL(addr, path string) string {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimRight(addr, "/") + path
}

func (n *Node) fetchClusterInfo(ctx context.Context, addr string) (ClusterInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, joinURL(addr, "/v1/cluster?consistency=stale"), nil)
	if err != nil {
		return ClusterInfo{}, err
	}
	n.setJoinToken(req)
	resp, err := n.public.Do(req)
	if err != nil {
		return ClusterInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ClusterInfo{}, fmt.Errorf("%s answered %s", addr, resp.Status)
	}
	var info ClusterInfo
	err = json.NewDecoder(resp.Body).Decode(&info)
	return info, err
}

// setJoinToken authenticates a call to a --join address.
func (n *Node) setJoinToken(req *http.Request) {
	if n.cfg.JoinToken != "" {
		req.Header.Set("Authorization", "Bearer "+n.cfg.JoinToken)
	}
}

// joinLoop asks the --join addresses to add this node until one succeeds.
func (n *Node) joinLoop() {
	body, _ := json.Marshal(registry.Node{ID: n.cfg.NodeID, HTTPAddr: n.cfg.HTTPAddr, RaftAddr: n.cfg.RaftAddr, Incarnation: n.incarnation})
	for {
		for _, addr := range n.cfg.Join {
			if ok, _ := n.Ready(); ok {
				n.logger.Info("this node is a voter of every group")
				return
			}
			err := n.requestJoin(addr, body)
			if err == nil {
				n.logger.Info("joined the cluster", "via", addr)
				return
			}
			n.logger.Warn("join attempt failed; will retry", "via", addr, "error", err)
			if !n.sleepOrStop(time.Second) {
				return
			}
		}
	}
}

func (n *Node) requestJoin(addr string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.JoinTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	url := joinURL(addr, fmt.Sprintf("/v1/cluster/join?timeout=%s", n.cfg.JoinTimeout))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	n.setJoinToken(req)
	resp, err := n.public.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// registerSelf records this node's current addresses in the registry (and,
// for a new cluster, the cluster id and shard count). It retries until it
// succeeds or the node stops. A restarted node that is no longer a member of
// the meta group (it left) does not re-register.
//
// It goes on until this node's own replica shows the entry with its
// incarnation: during an upgrade, a meta leader of an older raftkv records
// the addresses but drops the incarnation, so the registration is repeated
// every few seconds until a leader of this version records it.
func (n *Node) registerSelf(initCluster bool) {
	self := registry.Node{ID: n.cfg.NodeID, HTTPAddr: n.cfg.HTTPAddr, RaftAddr: n.cfg.RaftAddr, Incarnation: n.incarnation}
	wait := 100 * time.Millisecond
	for {
		if n.meta.leaderID() != "" {
			if !n.meta.isMember(n.cfg.NodeID, false) {
				n.logger.Warn("this node is not a member of the cluster; not registering")
				return
			}
			if err := n.registerOnce(initCluster, self); err == nil {
				if cur, ok := n.meta.reg.Node(self.ID); ok && cur == self {
					return
				}
				// Done on the leader but not (yet) seen here as sent.
				initCluster, wait = false, 5*time.Second
			} else {
				n.logger.Debug("registration not done yet", "error", err)
			}
		}
		if !n.sleepOrStop(wait) {
			return
		}
	}
}

func (n *Node) registerOnce(initCluster bool, self registry.Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if initCluster {
		if _, _, err := route(ctx, n, MetaGroup, "init", initArgs{n.clusterID, n.shards}, n.initLocal, idempotent); err != nil {
			return err
		}
	}
	if err := n.ensureBootstrapToken(ctx, initCluster); err != nil {
		return err
	}
	if cur, ok := n.meta.reg.Node(self.ID); ok && cur == self {
		return nil
	}
	_, _, err := route(ctx, n, MetaGroup, "register", self, n.registerLocal, idempotent)
	return err
}
