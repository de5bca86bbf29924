package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// RetryAfter is the delay suggested to clients when no leader is reachable.
const RetryAfter = time.Second

// idempotency says whether an operation may be sent again after a forwarded
// attempt broke mid-flight (reads may; writes may not, since the first
// attempt may have been applied).
type idempotency bool

const (
	idempotent    idempotency = true
	nonIdempotent idempotency = false
	retryWait                 = 20 * time.Millisecond
	retryMax                  = 200 * time.Millisecond
)

// route runs op on the current leader of groupName: locally when this node
// leads the group, otherwise on the leader over the internal protocol. It
// retries while leadership is moving, until ctx is done, and returns the
// result and the id of the node that served it.
func route[A, R any](ctx context.Context, n *Node, groupName, op string, args A, local func(context.Context, *group, A) (R, error), kind idempotency) (R, string, error) {
	var zero R
	g, ok := n.groups[groupName]
	if !ok {
		return zero, "", fmt.Errorf("%w: group %q", ErrNotFound, groupName)
	}
	wait := retryWait
	var lastErr error
	// maybeApplied: an attempt reached a leader and its answer never came.
	// From then on the request may have happened, whatever later attempts
	// say, so running out of time is indeterminate, never "unavailable"
	// (which tells the client nothing was done).
	maybeApplied := false
	for {
		if err := n.checkOpen(); err != nil {
			return zero, "", err
		}
		if err := n.CheckMember(); err != nil && !leaveOps[op] {
			return zero, "", err
		}
		if g.raft.State() == raft.Shutdown {
			// raft stops a group on a node removed from it: waiting for a
			// leader would only burn the deadline.
			return zero, "", fmt.Errorf("%w: this node's replica of %s is stopped (was it removed from the cluster?)", ErrUnavailable, groupName)
		}
		changed := g.leaderChanged()
		res, served, err := routeOnce(ctx, n, g, op, args, local)
		switch {
		case err == nil:
			return res, served, nil
		case errors.Is(err, errNotLeader), errors.Is(err, errDialFailed), errors.Is(err, errNoLeaderKnown):
			lastErr = err
		case errors.Is(err, ErrIndeterminate) && kind == idempotent:
			lastErr, maybeApplied = err, true
		default:
			return zero, served, err
		}
		select {
		case <-ctx.Done():
			if maybeApplied {
				return zero, "", fmt.Errorf("%w: no answer from a leader of %s before the deadline, after an attempt that may have been applied (last: %v)", ErrIndeterminate, groupName, lastErr)
			}
			return zero, "", fmt.Errorf("%w: no leader of %s reachable before the deadline (last: %v)", ErrUnavailable, groupName, lastErr)
		case <-n.stop:
			if maybeApplied {
				return zero, "", fmt.Errorf("%w: node is shutting down, after an attempt that may have been applied (last: %v)", ErrIndeterminate, lastErr)
			}
			return zero, "", fmt.Errorf("%w: node is shutting down", ErrUnavailable)
		case <-changed:
			// A new leader is known: try it at once rather than after the
			// backoff, so a failover costs the election and no more.
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

var errNoLeaderKnown = errors.New("no leader known")

// leaveOps are the steps of a leave, which a node removed from some groups
// still forwards: a leave run on the leaving node itself goes on after its
// first groups have let it go (membership.go).
var leaveOps = map[string]bool{"remove-member": true, "deregister": true}

// forwardGrace is how long a forwarded request still waits for the node it
// was sent to once this node sees another leader.
const forwardGrace = 250 * time.Millisecond

func routeOnce[A, R any](ctx context.Context, n *Node, g *group, op string, args A, local func(context.Context, *group, A) (R, error)) (R, string, error) {
	var zero R
	if g.isLeader() {
		res, err := local(ctx, g, args)
		return res, n.cfg.NodeID, err
	}
	leaderAddr, leaderID := g.raft.LeaderWithID()
	leader := string(leaderID)
	if leader == "" || leader == n.cfg.NodeID {
		if !g.isMember(n.cfg.NodeID, false) && g.hasConfiguration() {
			// A node removed from the group hears from no leader again:
			// waiting would only burn the deadline.
			groups := n.removedFrom()
			if !slices.Contains(groups, g.name) {
				groups = append(groups, g.name)
			}
			return zero, "", fmt.Errorf("%w: %s", ErrRemoved, n.removalMessage(groups, evidenceConfiguration, ""))
		}
		return zero, "", errNoLeaderKnown
	}
	// The leader's raft address comes from raft itself, so forwarding
	// needs nothing from the registry.
	addr := string(leaderAddr)
	// If this node sees another leader while the forwarded request is in
	// flight, the old leader was deposed (perhaps cut off by a partition):
	// stop waiting for it once its tenure ends. A write's outcome is then
	// unknown.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(g.tenure.of(leader), cancel)()
	var out R
	served, err := n.rpc.call(fctx, addr, g.name, op, args, &out)
	if err != nil && fctx.Err() != nil && ctx.Err() == nil && !errors.Is(err, errDialFailed) {
		err = fmt.Errorf("%w: %s stopped leading %s while the request was in flight", ErrIndeterminate, leader, g.name)
	}
	return out, served, err
}
