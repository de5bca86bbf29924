package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// The cross-shard coordinator. One attempt of a transaction goes through
// these states; the record on the primary is the only one that matters
// after a crash, the rest lives in this goroutine:
//
//	preparing ──any no / error──▶ aborting ──▶ (retry with a new id | 409 | error)
//	    │ all yes
//	    ▼
//	deciding ──record says aborted (recovery won)──▶ (retry | 409)
//	    │ record committed: the commit point
//	    ▼
//	resolving (background) ──▶ marked resolved on the primary
//
// Every entry it proposes is idempotent, so forwarded calls are retried
// when their outcome is unknown.

// errAbandoned: the test hook stopped the coordinator mid-protocol.
var errAbandoned = errors.New("coordinator stopped by test hook")

// attemptResult is what one 2PC attempt ended with.
type attemptResult int

const (
	attemptCommitted attemptResult = iota
	attemptConflict                // a lock or recovery got in the way; retry
)

func (n *Node) txn2PC(ctx context.Context, req TxnRequest, plan txnPlan) (TxnResponse, error) {
	cfg := n.txnConfig()
	wait := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		id := newTxnID(plan.shards[0])
		res, outcome, votes, err := n.attempt2PC(ctx, id, plan)
		if err != nil {
			return TxnResponse{}, err
		}
		if outcome == attemptCommitted {
			return buildResponse(id, req, plan, res, votes), nil
		}
		if attempt >= cfg.Attempts || !n.backoff(ctx, wait) {
			return TxnResponse{}, fmt.Errorf("%w: keys locked by other transactions; gave up after %d attempts", ErrConflict, attempt)
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// attempt2PC runs one attempt under transaction id.
func (n *Node) attempt2PC(ctx context.Context, id string, plan txnPlan) (fsm.Record, attemptResult, map[string]prepareReply, error) {
	primary := plan.shards[0]
	started := n.clock.Now()
	votes, err := n.prepareAll(ctx, id, plan, started)
	if errors.Is(err, errAbandoned) {
		return fsm.Record{}, 0, nil, fmt.Errorf("%w: %v", ErrIndeterminate, err)
	}
	yes, held := err == nil, true
	for _, v := range votes {
		yes = yes && v.Vote == "yes"
		held = held && v.Succeeded
	}
	if !yes {
		n.abort2PC(id, plan.shards)
		if err != nil {
			return fsm.Record{}, 0, nil, err
		}
		return fsm.Record{}, attemptConflict, nil, nil
	}
	outcome := fsm.OutcomeFailure
	if held {
		outcome = fsm.OutcomeSuccess
	}
	if err := n.txnStep(StepDecide, id, primary); err != nil {
		return fsm.Record{}, 0, nil, fmt.Errorf("%w: %v", ErrIndeterminate, errAbandoned)
	}
	rec, err := n.decideOn(ctx, primary, id, outcome, plan.shards)
	if err != nil {
		// The decision may or may not be in the log; recovery settles it
		// from the record either way.
		return fsm.Record{}, 0, nil, fmt.Errorf("%w: transaction %s: deciding: %v", ErrIndeterminate, id, err)
	}
	n.resolveInBackground(id, rec)
	if rec.State != fsm.StateCommitted {
		return rec, attemptConflict, nil, nil // recovery aborted it first
	}
	return rec, attemptCommitted, votes, nil
}

// prepareAll sends the prepares in parallel. It returns every vote, and the
// first error (errAbandoned if the hook stopped any prepare).
func (n *Node) prepareAll(ctx context.Context, id string, plan txnPlan, started time.Time) (map[string]prepareReply, error) {
	cfg := n.txnConfig()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	votes := map[string]prepareReply{}
	for _, shard := range plan.shards {
		if err := n.txnStep(StepPrepare, id, shard); err != nil {
			firstErr = errAbandoned
			continue
		}
		// The prepare is sent with the time it has left (a duration: the
		// participant's leader dates it by its own clock) and waited for
		// no longer than that.
		ttl := cfg.PrepareTimeout - n.clock.Now().Sub(started)
		if ttl <= 0 {
			mu.Lock()
			votes[shard] = prepareReply{Vote: "finished"}
			mu.Unlock()
			continue
		}
		cmd := fsm.TxnCmd{ID: id, Primary: plan.shards[0], Participants: plan.shards,
			Deadline: started.Add(cfg.PrepareTimeout).UnixNano(), Body: *plan.parts[shard]}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, ttl)
			defer cancel()
			v, err := n.prepareOn(pctx, shard, cmd, ttl)
			if err != nil && pctx.Err() != nil && ctx.Err() == nil {
				// No answer within the prepare timeout: a no vote. The
				// abort that follows drops the part if it landed anyway.
				v, err = prepareReply{Vote: "finished"}, nil
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if err == nil {
				votes[shard] = v
			}
		}()
	}
	wg.Wait()
	return votes, firstErr
}

// abort2PC aborts attempt id on its primary (creating an aborted record if
// the primary never prepared) and drops the other parts in the background.
// When the primary cannot be reached, recovery finishes the job.
func (n *Node) abort2PC(id string, shards []string) {
	actx, cancel := n.detached(5 * time.Second)
	defer cancel()
	rec, err := n.decideOn(actx, shards[0], id, fsm.OutcomeAborted, shards)
	if err != nil {
		n.logger.Warn("transaction abort not recorded; recovery will finish it", "txn", id, "error", err)
		return
	}
	n.resolveInBackground(id, rec)
}

// resolveInBackground applies a decided record on every participant but the
// primary (which the decide entry resolved) and then marks the record
// resolved. Failures are left to the recovery loop.
func (n *Node) resolveInBackground(id string, rec fsm.Record) {
	if rec.State == fsm.StatePending || len(rec.Participants) == 0 || n.checkOpen() != nil {
		return
	}
	n.goFunc(func() {
		ctx, cancel := n.detached(30 * time.Second)
		defer cancel()
		if err := n.resolveAll(ctx, id, rec, true); err != nil {
			n.logger.Debug("transaction resolve incomplete; recovery will finish it", "txn", id, "error", err)
		}
	})
}

// resolveAll resolves every non-primary participant in parallel, then marks
// the record resolved. withHook consults the test hook (coordinator only).
func (n *Node) resolveAll(ctx context.Context, id string, rec fsm.Record, withHook bool) error {
	if len(rec.Participants) == 0 {
		return fmt.Errorf("transaction %s: record lists no participants to resolve", id)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(rec.Participants))
	for i, shard := range rec.Participants[1:] {
		if withHook {
			if err := n.txnStep(StepResolve, id, shard); err != nil {
				errs[i+1] = errAbandoned
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i+1] = n.resolveOn(ctx, shard, id, rec.Outcome())
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return n.markResolvedOn(ctx, rec.Participants[0], id)
}

// detached returns a context that outlives the request (the protocol must
// finish even if the client left) but ends with the node or after d.
func (n *Node) detached(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// buildResponse assembles the results of the chosen branch in op order from
// the prepare answers (pre-transaction state).
func buildResponse(id string, req TxnRequest, plan txnPlan, rec fsm.Record, votes map[string]prepareReply) TxnResponse {
	out := TxnResponse{Succeeded: rec.Succeeded, ID: id, Mode: Mode2PC, Shards: plan.shards}
	ops, refs := req.Failure, plan.failure
	if rec.Succeeded {
		ops, refs = req.Success, plan.success
	}
	for i, o := range ops {
		ref := refs[i]
		v := votes[ref.shard]
		idx := ref.index
		if !rec.Succeeded {
			idx += len(plan.parts[ref.shard].Success)
		}
		r := TxnOpResult{Op: o.Kind, Key: o.Key}
		if idx < len(v.Results) {
			r.Found, r.KV = v.Results[idx].Found, v.Results[idx].KV
		}
		if o.Kind == fsm.OpPut {
			r.KV = fsm.KV{Key: o.Key, Value: o.Value}
		}
		out.Results = append(out.Results, r)
	}
	return out
}
