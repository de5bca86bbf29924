package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// Lease countdowns and expiry.
//
// Only the leader of a lease's home shard keeps its countdown, in memory,
// by its own clock. Keepalives are not logged: a new leader does not know
// when the last one came, so when it takes the shard over (after a read
// barrier of its term, which applies every entry of earlier terms) it
// restarts every lease's countdown with the lease's full time to live. A
// leader change therefore extends leases, by the time the change took plus
// whatever was left, and never shortens one.
//
// The decision to expire is proposed as a revoke prepare carrying the term
// of the countdown that ran out; the state machine applies it only in an
// entry of that term (fsm.ErrLeaseFenced otherwise), so a node that lost
// and regained leadership in between cannot act on a countdown the cluster
// has since restarted, and a deposed leader cannot commit anything at all.

// leaseLoopInterval is how often each node looks at the leases of the
// shards it leads. It bounds how late an expiry lands (the TTL is at least
// MinLeaseTTL, so 1/20 of it).
const leaseLoopInterval = 250 * time.Millisecond

// orphanAge is how long a shard's leader holds another home's live lease
// before it checks that the home still has it (orphanSweep). It is longer
// than any request's deadline (MaxTimeout in httpapi is 5 m), so no grant
// of the lease can still be on its way to the home.
const orphanAge = 10 * time.Minute

// leaseTimes is one shard's countdowns on this node, valid for one term
// of its leadership. mu guards the fields.
type leaseTimes struct {
	mu        sync.Mutex
	term      uint64               // 0 before the first takeover
	deadlines map[string]time.Time // by lease id, this node's clock
	expiring  map[string]bool      // expiry or revoke decided: no more keepalives
	// seen is when this leader first saw each live lease of another home
	// (orphanSweep); swept is when it last checked each home.
	seen  map[string]time.Time
	swept map[string]time.Time
}

// leaseState is the node's per-shard leaseTimes (made on first use).
type leaseState struct {
	mu     sync.Mutex
	shards map[string]*leaseTimes
}

func (s *leaseState) of(group string) *leaseTimes {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shards == nil {
		s.shards = map[string]*leaseTimes{}
	}
	t := s.shards[group]
	if t == nil {
		t = &leaseTimes{}
		s.shards[group] = t
	}
	return t
}

// leaseView returns g's countdowns for this node's current term of
// leadership; the first call in a term takes the shard over.
func (n *Node) leaseView(ctx context.Context, g *group) (*leaseTimes, error) {
	lt := n.leases.of(g.name)
	term := g.raft.CurrentTerm()
	if lt.termNow() == term {
		return lt, nil
	}
	if err := g.readBarrier(ctx); err != nil {
		return nil, err
	}
	if g.raft.CurrentTerm() != term {
		return nil, errNotLeader
	}
	now := n.clock.Now()
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if lt.term != term {
		lt.term, lt.deadlines, lt.expiring = term, map[string]time.Time{}, map[string]bool{}
		lt.seen, lt.swept = map[string]time.Time{}, map[string]time.Time{}
		for _, l := range g.kv.Leases(g.name+".", false) {
			lt.deadlines[l.ID] = now.Add(time.Duration(l.TTL))
		}
	}
	return lt, nil
}

func (t *leaseTimes) termNow() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.term
}

// start sets the countdown of a lease granted in this term.
func (t *leaseTimes) start(id string, deadline time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.deadlines != nil && !t.expiring[id] {
		t.deadlines[id] = deadline
	}
}

// extend moves the deadline of a lease on (a keepalive); false if its
// expiry has been decided.
func (t *leaseTimes) extend(id string, deadline time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.deadlines == nil || t.expiring[id] {
		return false
	}
	t.deadlines[id] = deadline
	return true
}

// expire marks a lease whose revocation is under way.
func (t *leaseTimes) expire(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.expiring != nil {
		t.expiring[id] = true
	}
}

// forget drops a revoked lease.
func (t *leaseTimes) forget(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.deadlines, id)
	delete(t.expiring, id)
}

// due returns the time left of a lease, and whether it has run out. A
// lease the map does not know yet (granted as the term began) starts now.
func (t *leaseTimes) due(id string, now time.Time, ttl time.Duration) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d, ok := t.deadlines[id]
	if !ok {
		d = now.Add(ttl)
		if t.deadlines != nil {
			t.deadlines[id] = d
		}
	}
	if t.expiring[id] {
		return 0, true
	}
	return d.Sub(now), !now.Before(d)
}

func (t *leaseTimes) remaining(id string, now time.Time, ttl time.Duration) time.Duration {
	left, _ := t.due(id, now, ttl)
	return max(left, 0)
}

// expireIfDue marks the lease expiring if its countdown has run out, in
// one hold of the lock, so a keepalive either comes first (and moves the
// deadline) or is refused.
func (t *leaseTimes) expireIfDue(id string, now time.Time, ttl time.Duration) bool {
	if _, out := t.due(id, now, ttl); !out {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if d, ok := t.deadlines[id]; ok && now.Before(d) && !t.expiring[id] {
		return false // a keepalive came in between
	}
	if t.expiring != nil {
		t.expiring[id] = true
	}
	return true
}

// leaseLoop expires the leases of the shards this node leads and finishes
// revocations left half done.
func (n *Node) leaseLoop() {
	for n.sleepOrStop(leaseLoopInterval) {
		for _, name := range n.order {
			if g := n.groups[name]; g.kv != nil && g.isLeader() {
				if err := n.tendLeases(g); err != nil {
					n.logger.Debug("lease expiry pass cut short", "group", g.name, "error", err)
				}
			}
		}
		n.leasePasses.Add(1)
	}
}

// LeaseExpiryPasses counts the passes the lease expiry loop has finished
// on this node, so a test can wait for one to have run.
func (n *Node) LeaseExpiryPasses() uint64 { return n.leasePasses.Load() }

// tendLeases is one pass over g (led by this node): revoke the leases homed
// here whose countdown ran out or whose revocation is unfinished, and
// commit the revocations of other shards' leases that their home has
// already committed.
func (n *Node) tendLeases(g *group) error {
	leases := g.kv.Leases("", false)
	if len(leases) == 0 {
		return nil
	}
	ctx, cancel := detached(n.stop, 10*time.Second)
	defer cancel()
	lt, err := n.leaseView(ctx, g)
	if err != nil {
		return err
	}
	term := lt.termNow()
	now := n.clock.Now()
	var foreign []fsm.LeaseInfo
	for _, l := range leases {
		home, err := n.leaseHome(l.ID)
		if err != nil {
			continue // not one this cluster could have granted; nothing to time
		}
		if home != g.name {
			if l.Revoking {
				if _, err := n.settleLeaseLock(ctx, g, l.ID); err != nil {
					return err
				}
			} else {
				foreign = append(foreign, l)
			}
			continue
		}
		if !l.Revoking && !lt.expireIfDue(l.ID, now, time.Duration(l.TTL)) {
			continue
		}
		n.logger.Debug("lease expired", "lease", l.ID, "group", g.name)
		if _, err := n.revokeLease(ctx, g, l.ID, term); err != nil {
			return err
		}
	}
	return n.orphanSweep(ctx, g, lt, foreign, now)
}

// orphanSweep drops from g the live leases of other homes that their home
// no longer has. Normally a lease leaves every shard through its
// revocation; one can be left behind by a grant that failed part-way and
// whose drop failed too, or by a backup whose shard copies straddle a
// grant or a revocation. Nothing would ever time such a lease, so its keys
// would stay for good. A lease qualifies once this leader has held it for
// orphanAge; each home is asked at most once per orphanAge, with one
// listing, and then only about the leases it did not list.
func (n *Node) orphanSweep(ctx context.Context, g *group, lt *leaseTimes, foreign []fsm.LeaseInfo, now time.Time) error {
	due := map[string][]string{} // home → candidate ids
	lt.mu.Lock()
	live := map[string]bool{}
	for _, l := range foreign {
		live[l.ID] = true
		first, ok := lt.seen[l.ID]
		if !ok {
			lt.seen[l.ID] = now
			continue
		}
		home, _ := n.leaseHome(l.ID)
		if now.Sub(first) >= orphanAge && now.Sub(lt.swept[home]) >= orphanAge {
			due[home] = append(due[home], l.ID)
		}
	}
	for id := range lt.seen {
		if !live[id] {
			delete(lt.seen, id)
		}
	}
	lt.mu.Unlock()
	for home, ids := range due {
		list, _, err := route(ctx, n, home, "lease-list", struct{}{}, n.leaseListLocal, idempotent)
		if err != nil {
			return err
		}
		listed := map[string]bool{}
		for _, l := range list.Leases {
			listed[l.ID] = true
		}
		for _, id := range ids {
			if listed[id] {
				continue
			}
			// Not live at home: gone, or being revoked (then its
			// revocation reaches this shard; leave it be).
			r, _, err := route(ctx, n, home, "lease-get", leaseArgs{ID: id}, n.leaseGetLocal, idempotent)
			if err != nil {
				return err
			}
			if r.Found {
				continue
			}
			n.logger.Warn("dropping a lease its home no longer has", "lease", id, "group", g.name)
			if _, err := n.leasePhase(ctx, g, id, fsm.LeaseCommit, 0); err != nil {
				return err
			}
		}
		lt.mu.Lock()
		lt.swept[home] = now
		lt.mu.Unlock()
	}
	return nil
}

// settleLeaseLock is settleLock for a key locked by the revocation of lease
// id on g (led by this node): if the lease's home has committed the
// revocation (the lease is gone there), commit it here too and report
// true; if the revocation is still under way, false.
func (n *Node) settleLeaseLock(ctx context.Context, g *group, id string) (bool, error) {
	home, err := n.leaseHome(id)
	if err != nil {
		return false, err
	}
	if home == g.name {
		return false, nil // the home's own revocation finishes it
	}
	r, _, err := route(ctx, n, home, "lease-get", leaseArgs{ID: id}, n.leaseGetLocal, idempotent)
	if err != nil {
		return false, err
	}
	if r.Found {
		return false, nil
	}
	if _, err := n.leasePhase(ctx, g, id, fsm.LeaseCommit, 0); err != nil {
		return false, err
	}
	return true, nil
}
