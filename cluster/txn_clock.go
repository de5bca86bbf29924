package cluster

import (
	"context"
	"sync"
	"time"
)

// Dating transaction state with one clock.
//
// The stamps in a shard's transaction state (a part's PreparedAt, a
// record's StartedAt and DecidedAt, a finished marker's time) are the clock
// of whichever leader proposed the entry. Comparing them with another
// node's clock would make that node's skew an age: a leader whose clock
// runs ahead would take live transactions for abandoned ones and collect
// records early. So a leader reads a stamp against its own clock only if it
// wrote the stamp itself, in its current term. Everything it found in the
// state when it took over (its "inheritance") is dated from that moment,
// by its own clock: a new leader restarts every timer instead of trusting
// the old leader's stamps. That errs on the late side only: what it
// inherited is at least as old as the takeover.
//
// In practice:
//
//   - age(id, stamp): inherited ids are as old as the takeover; the rest
//     were stamped by this leader in this term, and stamp is read against
//     its clock.
//   - gcBefore: the GC entry forgets what is stamped before a cutoff, and
//     the FSM compares the cutoff with the stamps (deterministically, every
//     replica alike). Until Retention has passed since the takeover, the
//     cutoff stays at or below the earliest inherited stamp, so nothing
//     inherited is forgotten before this leader has kept it Retention;
//     afterwards it is this leader's now - Retention. An inherited stamp
//     from a clock that ran ahead is forgotten late, by that skew.
//
// The takeover is taken after a read barrier in the term, so every entry
// of earlier terms has been applied and is part of the inheritance; every
// later entry of the term is this leader's own.

// txnTimes is one shard's takeover record on this node. mu guards it.
type txnTimes struct {
	mu   sync.Mutex
	term uint64 // the term the rest describes; 0 before the first takeover
	view txnView
}

// txnView is a takeover as one recovery pass or lock check sees it.
type txnView struct {
	now   time.Time // this node's clock when the view was taken
	since time.Time // this node's clock at the takeover
	// inherited holds the staged parts and the unresolved records present
	// at the takeover. Never modified once made (views share it).
	inherited map[string]struct{}
	// floor is the earliest decided-at or finished-marker stamp present at
	// the takeover; 0 if there was none.
	floor int64
}

// age returns how long ago, by this node's clock, the state of id stamped
// with stamp came about.
func (v txnView) age(id string, stamp int64) time.Duration {
	if _, ok := v.inherited[id]; ok {
		return v.now.Sub(v.since)
	}
	return v.now.Sub(time.Unix(0, stamp))
}

// gcBefore returns the cutoff for a GC entry that forgets what this leader
// has kept at least retention.
func (v txnView) gcBefore(retention time.Duration) int64 {
	before := v.now.Add(-retention).UnixNano()
	if v.floor != 0 && v.now.Sub(v.since) <= retention {
		before = min(before, v.floor)
	}
	return before
}

// txnView returns this node's view of g's transaction state, which it must
// be leading; the first call in a term records the takeover.
func (n *Node) txnView(ctx context.Context, g *group) (txnView, error) {
	term := g.raft.CurrentTerm()
	if v, ok := g.txnTimes.current(term); ok {
		v.now = n.clock.Now()
		return v, nil
	}
	// Every entry of an earlier term is applied once a barrier of this
	// term is: the state read next is all the inheritance.
	if err := g.readBarrier(ctx); err != nil {
		return txnView{}, err
	}
	if g.raft.CurrentTerm() != term {
		return txnView{}, errNotLeader
	}
	sum := g.kv.Transactions()
	v := txnView{since: n.clock.Now(), inherited: map[string]struct{}{}, floor: sum.OldestDone}
	for _, st := range sum.Staged {
		v.inherited[st.ID] = struct{}{}
	}
	for _, r := range sum.Records {
		if !r.Resolved {
			v.inherited[r.ID] = struct{}{}
		}
		if r.DecidedAt != 0 && (v.floor == 0 || r.DecidedAt < v.floor) {
			v.floor = r.DecidedAt
		}
	}
	v = g.txnTimes.takeOver(term, v)
	v.now = n.clock.Now()
	return v, nil
}

func (t *txnTimes) current(term uint64) (txnView, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.view, t.term == term
}

// takeOver records v as the takeover of term, unless another caller did
// first (then that one stands and is returned).
func (t *txnTimes) takeOver(term uint64, v txnView) txnView {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.term != term {
		t.term, t.view = term, v
	}
	return t.view
}
