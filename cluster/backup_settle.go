package cluster

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/fsm"
)

// settledCheckpoint loads a shard's checkpoint from an archive and applies
// the archive's decisions to it: the primary's pending records are decided
// (which also resolves the primary's own part), every staged part is
// applied or dropped, and each decided record is marked resolved, since
// every restored shard resolves it. The entries are numbered after the
// checkpoint's index with its term and stamped with the restore's clock.
// The result holds no open transaction the decisions name.
func settledCheckpoint(name string, term uint64, body io.Reader, decisions []backup.Decision) (*fsm.FSM, error) {
	f := fsm.New(name)
	if err := f.Restore(io.NopCloser(body)); err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	apply := func(t fsm.CommandType, c fsm.TxnCmd) error {
		c.Now = now
		l := &raft.Log{Index: f.AppliedIndex() + 1, Term: term, Type: raft.LogCommand, Data: fsm.EncodeTxn(t, c)}
		switch r, ok := f.Apply(l).(*fsm.Result); {
		case !ok:
			return fmt.Errorf("%s: %v of transaction %s returned no result", name, t, c.ID)
		case r.Err != nil:
			return fmt.Errorf("%w: %s: %v of transaction %s: %v", backup.ErrCorrupt, name, t, c.ID, r.Err)
		}
		return nil
	}
	for _, d := range decisions {
		outcome := fsm.OutcomeAborted
		if d.State == backup.DecisionCommitted {
			outcome = fsm.OutcomeFailure
			if d.Succeeded {
				outcome = fsm.OutcomeSuccess
			}
		}
		if d.Primary == name {
			if r, ok := f.Record(d.ID); ok {
				if r.State != fsm.StatePending && r.Outcome() != outcome {
					return nil, fmt.Errorf("%w: the backup decides transaction %s %s but the checkpoint of %s holds it %s",
						backup.ErrCorrupt, d.ID, d.State, name, r.State)
				}
				if r.State == fsm.StatePending {
					if err := apply(fsm.CommandTxnDecide, fsm.TxnCmd{ID: d.ID, Outcome: outcome, Participants: r.Participants}); err != nil {
						return nil, err
					}
				}
			}
		}
		if _, ok := f.Staged(d.ID); ok {
			if err := apply(fsm.CommandTxnResolve, fsm.TxnCmd{ID: d.ID, Outcome: outcome}); err != nil {
				return nil, err
			}
		}
		if d.Primary == name {
			if r, ok := f.Record(d.ID); ok && !r.Resolved {
				if err := apply(fsm.CommandTxnResolved, fsm.TxnCmd{ID: d.ID}); err != nil {
					return nil, err
				}
			}
		}
	}
	return f, nil
}
