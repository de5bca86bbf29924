package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// What a request does when it meets a key locked by a cross-shard
// transaction T:
//
//   - Reads ask T's record on its primary. Decided: resolve T on this shard
//     first, then read (never the old value after the commit point).
//     Pending or absent: T has not committed, so the last decided value is
//     still the current one and is returned at once.
//   - Writes (PUT, DELETE, single-shard transactions) ask the same. Decided:
//     resolve, retry. Pending and older than the recovery timeout: abort T
//     through its record, resolve, retry. Otherwise back off and retry, and
//     answer ErrConflict after TxnConfig.Attempts tries or at the deadline.

// applyUnlocked proposes cmd on g (whose leader this node is) and, while
// the FSM refuses it with ErrLocked, settles the lock or backs off and
// tries again. A refused entry changed nothing, so retrying is safe.
func (n *Node) applyUnlocked(ctx context.Context, g *group, cmd []byte) (any, error) {
	cfg := n.txnConfig()
	wait := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		resp, err := g.apply(ctx, cmd)
		if err != nil {
			return nil, err
		}
		r, ok := resp.(*fsm.Result)
		if !ok || !errors.Is(r.Err, fsm.ErrLocked) {
			return resp, nil
		}
		settled, err := n.settleLock(ctx, g, r.LockedBy)
		if err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("%w: key locked by transaction %s until the deadline", ErrConflict, r.LockedBy)
		}
		if attempt >= cfg.Attempts {
			return nil, fmt.Errorf("%w: key locked by transaction %s", ErrConflict, r.LockedBy)
		}
		if settled {
			continue
		}
		if !backoff(ctx, n.stop, wait) {
			return nil, fmt.Errorf("%w: key locked by transaction %s until the deadline", ErrConflict, r.LockedBy)
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// jittered returns a random wait between d/2 and d. Two transactions that
// lock each other's keys and retry in step would otherwise abort each other
// on every attempt; with jitter one of them soon goes first.
func jittered(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d-d/2+1)
}

// settleLock tries to finish transaction id, which holds a lock in g. It
// reports true when the transaction is no longer staged in g (or was just
// resolved there), false when it is pending and not yet stale.
func (n *Node) settleLock(ctx context.Context, g *group, id string) (bool, error) {
	if lease, ok := fsm.LeaseOfLock(id); ok {
		return n.settleLeaseLock(ctx, g, lease)
	}
	st, ok := g.kv.Staged(id)
	if !ok {
		return true, nil
	}
	rec, err := n.recordOn(ctx, st.Primary, id)
	if err != nil {
		return false, err
	}
	if !rec.Found || rec.Record.State == fsm.StatePending {
		view, err := n.txnView(ctx, g)
		if err != nil {
			return false, err
		}
		if view.age(id, st.PreparedAt) < n.txnConfig().RecoveryTimeout {
			return false, nil
		}
		r, err := n.coord.finish(ctx, st.Primary, id, st.Participants)
		if err != nil {
			return false, err
		}
		rec = recordReply{Found: true, Record: r}
	}
	if err := n.resolveOn(ctx, g.name, id, rec.Record.Outcome()); err != nil {
		return false, err
	}
	return true, nil
}

// settleForRead makes a linearizable read of key in g safe: if a decided
// transaction still locks the key here, it is resolved first. Called on
// g's leader after its read barrier.
func (n *Node) settleForRead(ctx context.Context, g *group, key string) error {
	id, ok := g.kv.Lock(key)
	if !ok {
		return nil
	}
	if lease, ok := fsm.LeaseOfLock(id); ok {
		// The key's lease is being revoked: once its home has committed
		// that, the key is gone, here as everywhere.
		settled, err := n.settleLeaseLock(ctx, g, lease)
		if err != nil || !settled {
			return err
		}
		return g.readBarrier(ctx)
	}
	st, ok := g.kv.Staged(id)
	if !ok {
		return nil
	}
	rec, err := n.recordOn(ctx, st.Primary, id)
	if err != nil {
		return err
	}
	if !rec.Found || rec.Record.State == fsm.StatePending {
		return nil // not committed: the last decided value is current
	}
	if err := n.resolveOn(ctx, g.name, id, rec.Record.Outcome()); err != nil {
		return err
	}
	return g.readBarrier(ctx)
}

// settleShardForRead is settleForRead for a whole shard, for listings: any
// transaction prepared here whose record is already decided is resolved
// first, so a listing never shows the old value (or lacks the new key) of a
// committed transaction. Pending ones leave the last decided state current.
func (n *Node) settleShardForRead(ctx context.Context, g *group) error {
	settled := false
	for _, st := range g.kv.Transactions().Staged {
		rec, err := n.recordOn(ctx, st.Primary, st.ID)
		if err != nil {
			return err
		}
		if !rec.Found || rec.Record.State == fsm.StatePending {
			continue
		}
		if err := n.resolveOn(ctx, g.name, st.ID, rec.Record.Outcome()); err != nil {
			return err
		}
		settled = true
	}
	for _, l := range g.kv.Leases("", false) {
		if !l.Revoking {
			continue
		}
		ok, err := n.settleLeaseLock(ctx, g, l.ID)
		if err != nil {
			return err
		}
		settled = settled || ok
	}
	if settled {
		return g.readBarrier(ctx)
	}
	return nil
}
