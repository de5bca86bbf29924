package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/registry"
)

// Leases. docs/leases.md has the API and the guarantees, DESIGN.md
// ("Leases") why it is built this way. In short: every shard holds every
// lease's record; a lease's id names its home shard, whose leader alone
// keeps its countdown (in memory: keepalives are not logged) and decides
// its expiry; a revocation is two-phase over all shards, the home's commit
// entry being the commit point.

// Lease time-to-live bounds.
const (
	MinLeaseTTL = 5 * time.Second
	MaxLeaseTTL = 24 * time.Hour
)

// Lease describes a lease as the cluster sees it.
type Lease struct {
	ID  string        `json:"id"`
	TTL time.Duration `json:"ttl"`
	// Remaining is the time left before the home shard's leader expires
	// the lease, by its clock, unless a keepalive comes first.
	Remaining time.Duration `json:"remaining"`
	// Keys are the keys attached to the lease, in order (GetLease only).
	Keys []string `json:"keys,omitempty"`
	// KeyCount is how many keys are attached (GetLease only).
	KeyCount int `json:"key_count"`
}

type leaseArgs struct {
	ID  string        `json:"id"`
	TTL time.Duration `json:"ttl,omitempty"`
	// Phase is the revoke phase (fsm.LeasePrepare, fsm.LeaseCommit).
	Phase byte `json:"phase,omitempty"`
}

type leasePutArgs struct {
	Key   string        `json:"key"`
	Value []byte        `json:"value"`
	Cond  fsm.Condition `json:"cond"`
	Lease string        `json:"lease"`
	Once  *onceArgs     `json:"once,omitempty"`
}

// leaseReply is one shard's view of a lease.
type leaseReply struct {
	Found    bool          `json:"found"`
	Revoking bool          `json:"revoking,omitempty"`
	TTL      time.Duration `json:"ttl,omitempty"`
	// Remaining is set by the home shard only.
	Remaining time.Duration `json:"remaining,omitempty"`
	Keys      []string      `json:"keys,omitempty"`
	KeyCount  int           `json:"key_count,omitempty"`
}

type leaseListReply struct {
	Leases []Lease `json:"leases"`
}

func validateTTL(ttl time.Duration) error {
	if ttl < MinLeaseTTL || ttl > MaxLeaseTTL {
		return badRequest("lease ttl %v is outside %v..%v", ttl, MinLeaseTTL, MaxLeaseTTL)
	}
	return nil
}

// leaseHome checks a lease id (<home shard>.<random>) and returns its home
// shard.
func (n *Node) leaseHome(id string) (string, error) {
	home, rest, ok := strings.Cut(id, ".")
	if !ok || rest == "" || len(id) > fsm.MaxLeaseIDBytes || strings.ContainsAny(rest, "./:") {
		return "", badRequest("lease id %q is not <shard>.<random>", id)
	}
	num, ok := strings.CutPrefix(home, "shard-")
	if i, err := strconv.Atoi(num); !ok || err != nil || i < 1 || i > n.shards || strconv.Itoa(i) != num {
		return "", badRequest("lease id %q names no shard of this cluster", id)
	}
	return home, nil
}

func leaseNotFound(id string) error {
	return fmt.Errorf("%w: lease %q not found or expired", ErrNotFound, id)
}

// GrantLease creates a lease of the given time to live. Every shard but the
// home (chosen at random, so leases spread over the shards' leaders)
// records it, then the home, which starts its countdown. If a shard fails,
// the error is returned and the records already written are dropped in
// the background (what is left is swept later, see orphanSweep).
func (n *Node) GrantLease(ctx context.Context, ttl time.Duration) (Lease, error) {
	if err := validateTTL(ttl); err != nil {
		return Lease{}, err
	}
	home := fmt.Sprintf("shard-%d", rand.IntN(n.shards)+1)
	a := leaseArgs{ID: newTxnID(home), TTL: ttl}
	// The other shards first, the home last: the countdown starts only
	// once every shard can attach keys to the lease, and a lease whose
	// grant failed part-way was never timed, nor handed out.
	errs := make([]error, n.shards)
	n.onEveryShard(func(i int, g *group) {
		if g.name != home {
			if errs[i] = n.txnStep(StepLeaseGrant, a.ID, g.name); errs[i] == nil {
				_, _, errs[i] = route(ctx, n, g.name, "lease-grant", a, n.leaseGrantLocal, idempotent)
			}
		}
	})
	err := errors.Join(errs...)
	if err == nil {
		if err = n.txnStep(StepLeaseGrant, a.ID, home); err == nil {
			_, _, err = route(ctx, n, home, "lease-grant", a, n.leaseGrantLocal, idempotent)
		}
	}
	if err != nil {
		n.dropGrant(a.ID)
		return Lease{}, err
	}
	return Lease{ID: a.ID, TTL: ttl, Remaining: ttl}, nil
}

// dropGrant removes, as far as it can, the records of a grant that failed
// part-way (nobody knows the id, so no key is attached to it), lest they
// stay on the shards that took them. Best effort, in the background.
func (n *Node) dropGrant(id string) {
	n.goFunc(func() {
		ctx, cancel := detached(n.stop, 10*time.Second)
		defer cancel()
		n.onEveryShard(func(_ int, g *group) {
			a := leaseArgs{ID: id, Phase: fsm.LeaseCommit}
			err := n.txnStep(StepLeaseCommit, id, g.name)
			if err == nil {
				_, _, err = route(ctx, n, g.name, "lease-phase", a, n.leasePhaseLocal, idempotent)
			}
			if err != nil {
				n.logger.Debug("dropping a failed lease grant", "lease", id, "group", g.name, "error", err)
			}
		})
	})
}

func (n *Node) leaseGrantLocal(ctx context.Context, g *group, a leaseArgs) (struct{}, error) {
	home, err := n.leaseHome(a.ID)
	if err != nil {
		return struct{}{}, err
	}
	if err := validateTTL(a.TTL); err != nil {
		return struct{}{}, err
	}
	var lt *leaseTimes
	if home == g.name {
		// Take the shard over first, so the new lease's countdown is this
		// term's from the start.
		if lt, err = n.leaseView(ctx, g); err != nil {
			return struct{}{}, err
		}
	}
	if err := applyChecked(ctx, g, fsm.EncodeLeaseGrant(a.ID, int64(a.TTL))); err != nil {
		return struct{}{}, err
	}
	if lt != nil {
		lt.start(a.ID, n.clock.Now().Add(a.TTL))
	}
	return struct{}{}, nil
}

// KeepAliveLease restarts the lease's countdown on its home shard's
// leader and returns its time to live. An unknown, expired or revoking
// lease is ErrNotFound.
func (n *Node) KeepAliveLease(ctx context.Context, id string) (Lease, error) {
	home, err := n.leaseHome(id)
	if err != nil {
		return Lease{}, err
	}
	r, _, err := route(ctx, n, home, "lease-keepalive", leaseArgs{ID: id}, n.keepAliveLocal, idempotent)
	if err != nil {
		return Lease{}, err
	}
	return Lease{ID: id, TTL: r.TTL, Remaining: r.Remaining}, nil
}

func (n *Node) keepAliveLocal(ctx context.Context, g *group, a leaseArgs) (leaseReply, error) {
	if home, err := n.leaseHome(a.ID); err != nil {
		return leaseReply{}, err
	} else if home != g.name {
		return leaseReply{}, badRequest("lease %q is homed on %s, not %s", a.ID, home, g.name)
	}
	lt, err := n.leaseView(ctx, g)
	if err != nil {
		return leaseReply{}, err
	}
	l, ok := g.kv.LeaseRecord(a.ID)
	if !ok || l.Revoking {
		return leaseReply{}, leaseNotFound(a.ID)
	}
	ttl := time.Duration(l.TTL)
	if !lt.extend(a.ID, n.clock.Now().Add(ttl)) {
		return leaseReply{}, leaseNotFound(a.ID) // expiry already decided
	}
	// A deposed leader must not promise a countdown the new one does not
	// keep: confirm the leadership, in the same term, after extending.
	if err := g.raft.VerifyLeader().Error(); err != nil {
		return leaseReply{}, translateRaftError(ctx, err)
	}
	if g.raft.CurrentTerm() != lt.termNow() {
		return leaseReply{}, errNotLeader
	}
	return leaseReply{Found: true, TTL: ttl, Remaining: ttl}, nil
}

// RevokeLease revokes the lease: all its keys, on every shard, are deleted
// at one point (the home shard's commit entry). An unknown lease is
// ErrNotFound.
func (n *Node) RevokeLease(ctx context.Context, id string) (int, error) {
	home, err := n.leaseHome(id)
	if err != nil {
		return 0, err
	}
	r, _, err := route(ctx, n, home, "lease-revoke", leaseArgs{ID: id}, n.revokeLocal, idempotent)
	return r.Deleted, err
}

func (n *Node) revokeLocal(ctx context.Context, g *group, a leaseArgs) (deletedReply, error) {
	if home, err := n.leaseHome(a.ID); err != nil {
		return deletedReply{}, err
	} else if home != g.name {
		return deletedReply{}, badRequest("lease %q is homed on %s, not %s", a.ID, home, g.name)
	}
	if err := g.readBarrier(ctx); err != nil {
		return deletedReply{}, err
	}
	lt, err := n.leaseView(ctx, g)
	if err != nil {
		return deletedReply{}, err
	}
	if _, ok := g.kv.LeaseRecord(a.ID); !ok {
		return deletedReply{}, leaseNotFound(a.ID)
	}
	return n.revokeLease(ctx, g, a.ID, lt.termNow())
}

// revokeLease runs a revocation from the home shard g, which this node
// leads in term: prepare on the home (fenced by term), prepare on every
// other shard, commit on the home (the commit point), commit everywhere
// else. Every step is idempotent, so the expiry loop re-runs it for a
// lease left revoking on its home.
func (n *Node) revokeLease(ctx context.Context, g *group, id string, term uint64) (deletedReply, error) {
	n.leases.of(g.name).expire(id)
	if _, err := n.leasePhase(ctx, g, id, fsm.LeasePrepare, term); err != nil {
		return deletedReply{}, err
	}
	counts := make([]int, n.shards)
	errs := make([]error, n.shards)
	others := func(phase byte) error {
		step := StepLeasePrepare
		if phase == fsm.LeaseCommit {
			step = StepLeaseCommit
		}
		n.onEveryShard(func(i int, s *group) {
			if s.name != g.name {
				if errs[i] = n.txnStep(step, id, s.name); errs[i] != nil {
					return
				}
				var r deletedReply
				r, _, errs[i] = route(ctx, n, s.name, "lease-phase", leaseArgs{ID: id, Phase: phase}, n.leasePhaseLocal, idempotent)
				counts[i] = r.Deleted
			}
		})
		return errors.Join(errs...)
	}
	if err := others(fsm.LeasePrepare); err != nil {
		return deletedReply{}, err
	}
	home, err := n.leasePhase(ctx, g, id, fsm.LeaseCommit, 0)
	if err != nil {
		return deletedReply{}, err
	}
	n.leases.of(g.name).forget(id)
	// Past the commit point: a shard that misses its commit now is
	// finished by its own leader's expiry loop, which finds the lease
	// revoking there and gone from its home.
	if err := others(fsm.LeaseCommit); err != nil {
		n.logger.Debug("lease revoke committed; a shard's commit is left to its leader", "lease", id, "error", err)
	}
	total := home.Deleted
	for _, c := range counts {
		total += c
	}
	return deletedReply{Deleted: total}, nil
}

// leasePhaseLocal runs one revoke phase on a shard other than the lease's
// home, for the home's leader; a prepare is stamped with this leader's
// term (the decision was the home's).
func (n *Node) leasePhaseLocal(ctx context.Context, g *group, a leaseArgs) (deletedReply, error) {
	if _, err := n.leaseHome(a.ID); err != nil {
		return deletedReply{}, err
	}
	if a.Phase != fsm.LeasePrepare && a.Phase != fsm.LeaseCommit {
		return deletedReply{}, badRequest("lease revoke phase %d", a.Phase)
	}
	return n.leasePhase(ctx, g, a.ID, a.Phase, g.raft.CurrentTerm())
}

// leasePhase proposes one revoke phase on g, which this node leads,
// settling any transaction lock in its way first.
func (n *Node) leasePhase(ctx context.Context, g *group, id string, phase byte, term uint64) (deletedReply, error) {
	if phase == fsm.LeaseCommit {
		term = 0
	}
	resp, err := n.applyUnlocked(ctx, g, fsm.EncodeLeaseRevoke(id, phase, term))
	if err != nil {
		return deletedReply{}, err
	}
	r, ok := resp.(*fsm.Result)
	switch {
	case !ok:
		return deletedReply{}, fmt.Errorf("unexpected apply response %T", resp)
	case errors.Is(r.Err, fsm.ErrLeaseFenced):
		return deletedReply{}, fmt.Errorf("%w: %v", errNotLeader, r.Err)
	case r.Err != nil:
		return deletedReply{}, fsmError("lease revoke", r.Err)
	}
	if phase == fsm.LeaseCommit {
		return deletedReply{Deleted: r.Count}, nil
	}
	return deletedReply{}, nil
}

// GetLease returns the lease with its remaining time and every key
// attached to it.
func (n *Node) GetLease(ctx context.Context, id string) (Lease, error) {
	home, err := n.leaseHome(id)
	if err != nil {
		return Lease{}, err
	}
	replies := make([]leaseReply, n.shards)
	errs := make([]error, n.shards)
	n.onEveryShard(func(i int, g *group) {
		replies[i], _, errs[i] = route(ctx, n, g.name, "lease-get", leaseArgs{ID: id}, n.leaseGetLocal, idempotent)
	})
	if err := errors.Join(errs...); err != nil {
		return Lease{}, err
	}
	out := Lease{ID: id}
	for i, r := range replies {
		if fmt.Sprintf("shard-%d", i+1) == home {
			if !r.Found || r.Revoking {
				return Lease{}, leaseNotFound(id)
			}
			out.TTL, out.Remaining = r.TTL, r.Remaining
		}
		out.Keys = append(out.Keys, r.Keys...)
	}
	sort.Strings(out.Keys)
	out.KeyCount = len(out.Keys)
	// The key names are the caller's to see only if it may read the keys.
	if err := n.authorizeKeys(ctx, registry.AccessRead, out.Keys...); err != nil {
		return Lease{}, err
	}
	return out, nil
}

func (n *Node) leaseGetLocal(ctx context.Context, g *group, a leaseArgs) (leaseReply, error) {
	home, err := n.leaseHome(a.ID)
	if err != nil {
		return leaseReply{}, err
	}
	// Linearizable: a shard settling a revoking lease's keys reads here
	// whether the home has committed the revocation.
	if err := g.readBarrier(ctx); err != nil {
		return leaseReply{}, err
	}
	var lt *leaseTimes
	if home == g.name {
		if lt, err = n.leaseView(ctx, g); err != nil {
			return leaseReply{}, err
		}
	}
	l, ok := g.kv.Lease(a.ID)
	if !ok {
		return leaseReply{}, nil
	}
	r := leaseReply{Found: true, Revoking: l.Revoking, TTL: time.Duration(l.TTL), Keys: l.Keys, KeyCount: l.KeyCount}
	if lt != nil {
		r.Remaining = lt.remaining(a.ID, n.clock.Now(), r.TTL)
	}
	return r, nil
}

// ListLeases lists every live lease, by id, with its time left but without
// its keys or their count.
//
// With auth on it needs the admin role: a lease id is the capability to
// keep the lease alive and to revoke it (which deletes its keys), so only
// an admin may learn the ids of leases it did not grant.
func (n *Node) ListLeases(ctx context.Context) ([]Lease, error) {
	if err := n.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	replies := make([]leaseListReply, n.shards)
	errs := make([]error, n.shards)
	n.onEveryShard(func(i int, g *group) {
		replies[i], _, errs[i] = route(ctx, n, g.name, "lease-list", struct{}{}, n.leaseListLocal, idempotent)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := []Lease{}
	for _, r := range replies {
		out = append(out, r.Leases...)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

// leaseListLocal lists the leases homed on g, without key counts (a lease's
// keys are on every shard).
func (n *Node) leaseListLocal(ctx context.Context, g *group, _ struct{}) (leaseListReply, error) {
	if err := n.RequireAdmin(ctx); err != nil {
		return leaseListReply{}, err
	}
	if err := g.readBarrier(ctx); err != nil {
		return leaseListReply{}, err
	}
	lt, err := n.leaseView(ctx, g)
	if err != nil {
		return leaseListReply{}, err
	}
	now := n.clock.Now()
	out := leaseListReply{Leases: []Lease{}}
	for _, l := range g.kv.Leases(g.name+".", false) {
		if l.Revoking {
			continue
		}
		ttl := time.Duration(l.TTL)
		out.Leases = append(out.Leases, Lease{ID: l.ID, TTL: ttl, Remaining: lt.remaining(l.ID, now, ttl)})
	}
	return out, nil
}

// PutWithLease writes value under key like Put and attaches the key to the
// lease; an unknown, expired or revoking lease is ErrNotFound and nothing
// is written.
func (n *Node) PutWithLease(ctx context.Context, key string, value []byte, cond fsm.Condition, lease string) (KVResult, error) {
	if err := ValidateKey(key); err != nil {
		return KVResult{}, err
	}
	if _, err := n.leaseHome(lease); err != nil {
		return KVResult{}, err
	}
	if err := n.checkPutValue(ctx, key, value); err != nil {
		return KVResult{}, err
	}
	once, err := onceFor(ctx, fsm.EncodeLeasePut(key, value, cond, lease))
	if err != nil {
		return KVResult{}, err
	}
	shard := n.ShardOf(key)
	res, served, err := route(ctx, n, shard, "lease-put", leasePutArgs{key, value, cond, lease, once}, n.leasePutLocal, once.routing())
	res.Node, res.Shard = served, shard
	return res, err
}

func (n *Node) leasePutLocal(ctx context.Context, g *group, a leasePutArgs) (KVResult, error) {
	if _, err := n.leaseHome(a.Lease); err != nil {
		return KVResult{}, err
	}
	resp, err := n.applyPut(ctx, g, a.Key, a.Value, a.Cond, a.Once, func() []byte {
		return fsm.EncodeLeasePut(a.Key, a.Value, a.Cond, a.Lease)
	})
	if err != nil {
		return KVResult{}, err
	}
	if r, ok := resp.(*fsm.Result); ok && errors.Is(r.Err, fsm.ErrLeaseNotFound) {
		return KVResult{}, leaseNotFound(a.Lease)
	}
	return kvResult(resp)
}
