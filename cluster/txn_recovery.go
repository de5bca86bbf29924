package cluster

import (
	"context"
	"slices"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// txnRecoveryLoop runs on every node for its lifetime (started by
// Node.start). Every RecoveryInterval, for each shard this node leads, it
// finishes the transactions whose coordinator went quiet:
//
//   - a staged part older than RecoveryTimeout (by this leader's clock;
//     see txn_clock.go): read the record on the primary; committed → apply,
//     aborted → drop, pending or absent → abort the record conditionally,
//     then drop;
//   - a pending record older than RecoveryTimeout: abort it, resolve every
//     participant;
//   - a decided record not yet marked resolved after RecoveryTimeout:
//     resolve every participant again (idempotent), then mark it;
//   - finished markers and resolved records older than Retention: one GC
//     entry, proposed only when there is something to forget.
//
// Whatever a record or staged part holds, recovery does not panic: state
// no coordinator of this cluster could have written (a record without
// participants, a part whose id names no shard of this cluster, both left
// by entries older builds accepted unchecked) is finished on this shard
// alone, with a warning; see finishOrphan.
func (n *Node) txnRecoveryLoop() {
	for {
		cfg := n.txnConfig()
		if !n.sleepOrStop(cfg.RecoveryInterval) {
			return
		}
		for _, name := range n.order {
			if g := n.groups[name]; g.kv != nil && g.isLeader() {
				n.recoverShard(g, cfg)
			}
		}
	}
}

func (n *Node) recoverShard(g *group, cfg TxnConfig) {
	ctx, cancel := detached(n.stop, cfg.RecoveryTimeout)
	defer cancel()
	view, err := n.txnView(ctx, g)
	if err != nil {
		n.logger.Debug("transaction recovery skipped", "group", g.name, "error", err)
		return
	}
	stale := func(id string, t int64) bool { return view.age(id, t) > cfg.RecoveryTimeout }
	sum := g.kv.Transactions()
	for _, st := range sum.Staged {
		if !stale(st.ID, st.PreparedAt) {
			continue
		}
		if primary, ok := n.primaryOf(st.ID); !ok || primary != st.Primary {
			// No primary of this cluster can hold a record for it, so no
			// one can have committed it: dropping the part is the abort.
			n.finishOrphan(ctx, g, st.ID, fsm.CommandTxnResolve, "staged part names no primary shard of this cluster")
			continue
		}
		rec, err := n.coord.recoverPart(ctx, g.name, st)
		n.logger.Info("recovered a stale transaction lock", "group", g.name, "txn", st.ID,
			"state", rec.State.String(), "error", err)
		n.noteRecovery(g.name, st.ID, "stale_lock", rec.State.String(), err)
	}
	for _, r := range sum.Records {
		if primary, ok := n.primaryOf(r.ID); !ok || primary != g.name || len(r.Participants) == 0 || r.Participants[0] != g.name {
			if (r.State == fsm.StatePending && stale(r.ID, r.StartedAt)) || (r.State != fsm.StatePending && !r.Resolved && stale(r.ID, r.DecidedAt)) {
				n.finishOrphan(ctx, g, r.ID, fsm.CommandTxnDecide, "record names no participants, or not this shard as its primary")
			}
			continue
		}
		switch {
		case r.State == fsm.StatePending && stale(r.ID, r.StartedAt):
			rec, err := n.coord.recoverRecord(ctx, r)
			n.logger.Info("finished a stale pending transaction", "group", g.name, "txn", r.ID,
				"state", rec.State.String(), "error", err)
			n.noteRecovery(g.name, r.ID, "stale_pending", rec.State.String(), err)
		case r.State != fsm.StatePending && !r.Resolved && stale(r.ID, r.DecidedAt):
			if rec, err := n.coord.recoverRecord(ctx, r); err != nil {
				n.logger.Debug("transaction still not resolved everywhere", "txn", r.ID, "error", err)
			} else {
				n.noteRecovery(g.name, r.ID, "unresolved_decision", rec.State.String(), nil)
			}
		}
	}
	before := view.gcBefore(cfg.Retention)
	collect := before > 0 && sum.OldestDone != 0 && sum.OldestDone < before
	for _, r := range sum.Records {
		collect = collect || (r.Resolved && r.DecidedAt < before)
	}
	if collect {
		if _, err := g.apply(ctx, fsm.EncodeTxn(fsm.CommandTxnGC, fsm.TxnCmd{Now: view.now.UnixNano(), Before: before})); err != nil {
			n.logger.Debug("transaction GC entry failed", "group", g.name, "error", err)
		}
	}
	g.txnRecoveryRuns.Add(1)
}

// recoveryParticipants returns the participant list to abort a stale part
// with: its own, or, if that list is unusable, the primary and this shard.
// Other participants' recovery finishes their own parts from the record.
func recoveryParticipants(primary, self string, ps []string) []string {
	if len(ps) > 0 && ps[0] == primary && !slices.Contains(ps, "") {
		return ps
	}
	if self == primary {
		return []string{primary}
	}
	return []string{primary, self}
}

// finishOrphan ends, on g alone, a transaction that no coordinator of this
// cluster could have started: a record kept on g is aborted if still
// pending (deciding also resolves g's own part) and marked resolved, so GC
// forgets it; a staged part is dropped. The entries are proposed on g
// directly, not through the operation checks, which refuse such ids.
func (n *Node) finishOrphan(ctx context.Context, g *group, id string, how fsm.CommandType, why string) {
	var err error
	switch how {
	case fsm.CommandTxnDecide:
		now := n.leaderNow()
		_, err = g.apply(ctx, fsm.EncodeTxn(fsm.CommandTxnDecide,
			fsm.TxnCmd{ID: id, Outcome: fsm.OutcomeAborted, Participants: []string{g.name}, Now: now}))
		if err == nil {
			_, err = g.apply(ctx, fsm.EncodeTxn(fsm.CommandTxnResolved, fsm.TxnCmd{ID: id, Now: now}))
		}
	default:
		_, err = g.apply(ctx, fsm.EncodeTxn(fsm.CommandTxnResolve,
			fsm.TxnCmd{ID: id, Outcome: fsm.OutcomeAborted, Now: n.leaderNow()}))
	}
	n.logger.Warn("finished a transaction no coordinator of this cluster started", "group", g.name, "txn", id,
		"why", why, "error", err)
	n.noteRecovery(g.name, id, "orphan", fsm.StateAborted.String(), err)
}

// TxnRecoveryEvent is one transaction that this node's recovery finished
// (Status.RecentTxnRecoveries).
type TxnRecoveryEvent struct {
	At    time.Time `json:"at"`
	Group string    `json:"group"`
	Txn   string    `json:"txn"`
	// Cause is "stale_lock" (a participant's part outlived the recovery
	// timeout), "stale_pending" (the primary's record did),
	// "unresolved_decision" (a decided record whose parts were not all
	// resolved in time) or "orphan" (no coordinator of this cluster could
	// have started it).
	Cause string `json:"cause"`
	// Outcome is the transaction's state afterwards; Error, if recovery
	// could not finish it this time (it tries again).
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
}

func (n *Node) noteRecovery(group, txn, cause, outcome string, err error) {
	ev := TxnRecoveryEvent{At: time.Now(), Group: group, Txn: txn, Cause: cause, Outcome: outcome}
	if err != nil {
		ev.Error = err.Error()
	}
	n.recoveries.add(ev)
	n.publish(n.groups[group], Event{At: ev.At, Type: EventTxnRecovered, Txn: txn, Cause: cause, Outcome: outcome, Error: ev.Error})
}
