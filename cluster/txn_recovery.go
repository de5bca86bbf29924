package cluster

import (
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// txnRecoveryLoop runs on every node for its lifetime (started by
// Node.start). Every RecoveryInterval, for each shard this node leads, it
// finishes the transactions whose coordinator went quiet:
//
//   - a staged part older than RecoveryTimeout (by the leader time in its
//     prepare entry): read the record on the primary; committed → apply,
//     aborted → drop, pending or absent → abort the record conditionally,
//     then drop;
//   - a pending record older than RecoveryTimeout: abort it, resolve every
//     participant;
//   - a decided record not yet marked resolved after RecoveryTimeout:
//     resolve every participant again (idempotent), then mark it;
//   - finished markers and resolved records older than Retention: one GC
//     entry, proposed only when there is something to forget.
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
	ctx, cancel := n.detached(cfg.RecoveryTimeout)
	defer cancel()
	now := time.Now()
	stale := func(t int64) bool { return now.Sub(time.Unix(0, t)) > cfg.RecoveryTimeout }
	sum := g.kv.Transactions()
	for _, st := range sum.Staged {
		if !stale(st.PreparedAt) {
			continue
		}
		rec, err := n.finishTxn(ctx, st.Primary, st.ID, st.Participants)
		if err == nil {
			err = n.resolveOn(ctx, g.name, st.ID, rec.Outcome())
		}
		n.logger.Info("recovered a stale transaction lock", "group", g.name, "txn", st.ID,
			"state", rec.State.String(), "error", err)
	}
	for _, r := range sum.Records {
		switch {
		case r.State == fsm.StatePending && stale(r.StartedAt):
			rec, err := n.decideOn(ctx, g.name, r.ID, fsm.OutcomeAborted, r.Participants)
			if err == nil {
				err = n.resolveAll(ctx, r.ID, rec, false)
			}
			n.logger.Info("finished a stale pending transaction", "group", g.name, "txn", r.ID,
				"state", rec.State.String(), "error", err)
		case r.State != fsm.StatePending && !r.Resolved && stale(r.DecidedAt):
			if err := n.resolveAll(ctx, r.ID, r, false); err != nil {
				n.logger.Debug("transaction still not resolved everywhere", "txn", r.ID, "error", err)
			}
		}
	}
	before := now.Add(-cfg.Retention).UnixNano()
	collect := sum.OldestDone != 0 && sum.OldestDone < before
	for _, r := range sum.Records {
		collect = collect || (r.Resolved && r.DecidedAt < before)
	}
	if collect {
		if _, err := g.apply(ctx, fsm.EncodeTxn(fsm.CommandTxnGC, fsm.TxnCmd{Now: now.UnixNano(), Before: before})); err != nil {
			n.logger.Debug("transaction GC entry failed", "group", g.name, "error", err)
		}
	}
}
