package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/raftkv/raftkv/fsm"
)

// The cross-shard coordinator: one type that drives two-phase commit
// against a small interface to the shards (participants), so each of its
// transitions can be tested against fake shards (txn_coord_test.go). The
// node is the production participants: each call runs on the shard's
// current leader (txn_ops.go). cluster/DESIGN.md, "Cross-shard
// transactions", has the state diagram.
//
// One attempt of a transaction goes through these states; the record on
// the primary is the only one that matters after a crash, the rest lives
// in the coordinator's goroutine:
//
//	preparing ──any no vote / error──▶ aborting ──▶ (retry with a new id | 409 | error)
//	    │ every vote yes
//	    ▼
//	deciding ──record says aborted (recovery won)──▶ (retry | 409)
//	    │ record committed: the commit point
//	    ▼
//	resolving (background) ──▶ marked resolved on the primary
//
// Every entry it proposes is idempotent, so calls whose outcome is unknown
// are retried.

// participants is what the coordinator (and recovery) needs from the
// shards: the protocol's operations on a named shard, run on whichever
// node leads it.
type participants interface {
	// prepareOn locks and stages cmd's part on shard and returns its vote;
	// ttl is how much longer the prepare may be accepted.
	prepareOn(ctx context.Context, shard string, cmd fsm.TxnCmd, ttl time.Duration) (prepareReply, error)
	// decideOn moves id's record on primary from pending to outcome (or
	// creates it aborted) and returns the record as it stands: a record
	// decided before keeps its first decision.
	decideOn(ctx context.Context, primary, id string, o fsm.Outcome, participants []string) (fsm.Record, error)
	// resolveOn applies (committed) or drops (aborted) id's part on shard.
	resolveOn(ctx context.Context, shard, id string, o fsm.Outcome) error
	// markResolvedOn notes on primary that every participant resolved id.
	markResolvedOn(ctx context.Context, primary, id string) error
	// recordOn reads id's record on primary linearizably.
	recordOn(ctx context.Context, primary, id string) (recordReply, error)
	// decideOnceOn is decideOn for an attempt of a keyed transaction
	// (idempotency.go): the attempt commits only if the key is new on
	// the primary, which then remembers the reply.
	decideOnceOn(ctx context.Context, primary string, a decideOnceArgs) (onceDecided, error)
	// rememberedOn reads what primary remembers under an idempotency key
	// (possibly behind: the keyed decide has the last word).
	rememberedOn(ctx context.Context, primary string, o onceArgs) (rememberedReply, error)
}

var _ participants = (*Node)(nil)

// Vote is a participant's answer to a prepare. Its values travel between
// nodes as these strings.
type Vote string

const (
	// VoteYes: the part is locked and staged; the shard can commit it.
	VoteYes Vote = "yes"
	// VoteLocked: another transaction holds a key of the part (LockedBy).
	VoteLocked Vote = "locked"
	// VoteFinished: the transaction already finished on the shard (aborted
	// by recovery, or resolved), or the prepare came too late.
	VoteFinished Vote = "finished"
)

// Yes reports whether v lets the transaction commit. Any other vote,
// including one this build does not know, is a no.
func (v Vote) Yes() bool { return v == VoteYes }

// errAbandoned: the test hook stopped the coordinator mid-protocol.
var errAbandoned = errors.New("coordinator stopped by test hook")

// attemptResult is what one 2PC attempt ended with.
type attemptResult int

const (
	attemptCommitted attemptResult = iota
	attemptConflict                // a lock or recovery got in the way; retry
)

// coordinator runs cross-shard transactions. Its fields are set once.
type coordinator struct {
	shards participants
	clock  Clock
	config func() TxnConfig
	// step is called before each step (TxnHook); an error stops the
	// coordinator there as if its process had died.
	step func(step TxnStep, id, shard string) error
	// spawn runs a background resolve (the node's goFunc: tracked, and
	// nothing starts once the node is closing).
	spawn  func(func())
	stop   <-chan struct{} // closed when the node stops
	logger hclog.Logger

	marks resolvedMarks // the coordinator's marks on their way
}

// newCoordinator returns the node's coordinator, which reaches the shards
// through the node.
func (n *Node) newCoordinator() *coordinator {
	return &coordinator{shards: n, clock: n.clock, config: n.txnConfig, step: n.txnStep,
		spawn: n.goFunc, stop: n.stop, logger: n.logger}
}

// run commits a cross-shard transaction, retrying with a new id (after a
// jittered backoff) while locks or recovery get in the way. With once set
// (an idempotency key), a request the primary already remembers is
// answered from there, and every attempt is decided by a keyed decide, so
// the request commits at most once whichever nodes coordinate it; the
// decide answers for a key that the (possibly lagging) look-up missed.
func (c *coordinator) run(ctx context.Context, req TxnRequest, plan txnPlan, once *onceArgs) (TxnResponse, error) {
	if once != nil {
		rem, err := c.shards.rememberedOn(ctx, plan.shards[0], *once)
		if err != nil {
			return TxnResponse{}, err
		}
		if res, found, err := replayed(rem, once); found {
			return res, err
		}
	}
	cfg := c.config()
	wait := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		id := newTxnID(plan.shards[0])
		res, outcome, err := c.attempt(ctx, id, req, plan, once)
		if err != nil || outcome == attemptCommitted {
			return res, err
		}
		if attempt >= cfg.Attempts || !backoff(ctx, c.stop, wait) {
			return TxnResponse{}, fmt.Errorf("%w: keys locked by other transactions; gave up after %d attempts", ErrConflict, attempt)
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// attempt runs one attempt under transaction id.
func (c *coordinator) attempt(ctx context.Context, id string, req TxnRequest, plan txnPlan, once *onceArgs) (TxnResponse, attemptResult, error) {
	primary := plan.shards[0]
	votes, err := c.prepareAll(ctx, id, plan)
	if errors.Is(err, errAbandoned) {
		return TxnResponse{}, 0, fmt.Errorf("%w: %v", ErrIndeterminate, err)
	}
	yes, held := err == nil, true
	for _, v := range votes {
		yes = yes && v.Vote.Yes()
		held = held && v.Succeeded
	}
	if !yes {
		c.abort(id, plan.shards)
		if err != nil {
			return TxnResponse{}, 0, err
		}
		return TxnResponse{}, attemptConflict, nil
	}
	outcome := fsm.OutcomeFailure
	if held {
		outcome = fsm.OutcomeSuccess
	}
	if err := c.step(StepDecide, id, primary); err != nil {
		return TxnResponse{}, 0, fmt.Errorf("%w: %v", ErrIndeterminate, errAbandoned)
	}
	res := buildResponse(id, req, plan, fsm.Record{Succeeded: held}, votes)
	rec, first, err := c.decide(ctx, id, outcome, plan.shards, once, res)
	if err != nil {
		return TxnResponse{}, 0, err
	}
	c.resolveInBackground(id, rec)
	switch {
	case first != nil:
		return *first, attemptCommitted, nil // the request committed before, in another attempt
	case rec.State != fsm.StateCommitted:
		return TxnResponse{}, attemptConflict, nil // recovery aborted it first
	}
	return buildResponse(id, req, plan, rec, votes), attemptCommitted, nil
}

// decide writes attempt id's decision on the primary and returns the
// record as it stands. A keyed attempt goes through decideOnceOn: if the
// key was remembered already, the attempt is aborted and first is the
// request's first reply (or the error says the key was reused).
func (c *coordinator) decide(ctx context.Context, id string, o fsm.Outcome, shards []string, once *onceArgs, res TxnResponse) (fsm.Record, *TxnResponse, error) {
	indeterminate := func(err error) error {
		// The decision may or may not be in the log; recovery settles it
		// from the record either way.
		return fmt.Errorf("%w: transaction %s: deciding: %v", ErrIndeterminate, id, err)
	}
	if once == nil {
		rec, err := c.shards.decideOn(ctx, shards[0], id, o, shards)
		if err != nil {
			return fsm.Record{}, nil, indeterminate(err)
		}
		return rec, nil, nil
	}
	reply, err := encodeTxnReply(res)
	if err != nil {
		return fsm.Record{}, nil, err
	}
	d, err := c.shards.decideOnceOn(ctx, shards[0], decideOnceArgs{
		Decide: decideArgs{ID: id, Outcome: o, Participants: shards}, Once: *once, Reply: reply})
	if err != nil {
		return fsm.Record{}, nil, indeterminate(err)
	}
	switch {
	case d.Reused:
		c.resolveInBackground(id, d.Record)
		return fsm.Record{}, nil, reusedKey(ErrIdempotencyKeyReused)
	case d.Replayed:
		first, err := decodeTxnReply(d.Reply)
		if err != nil {
			c.resolveInBackground(id, d.Record)
			return fsm.Record{}, nil, err
		}
		return d.Record, &first, nil
	}
	return d.Record, nil, nil
}

// prepareAll sends the prepares in parallel. It returns every vote, and the
// first error (errAbandoned if the hook stopped any prepare).
func (c *coordinator) prepareAll(ctx context.Context, id string, plan txnPlan) (map[string]prepareReply, error) {
	cfg := c.config()
	started := c.clock.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	votes := map[string]prepareReply{}
	vote := func(shard string, v prepareReply, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if err == nil {
			votes[shard] = v
		}
	}
	for _, shard := range plan.shards {
		if err := c.step(StepPrepare, id, shard); err != nil {
			vote(shard, prepareReply{}, errAbandoned)
			continue
		}
		// The prepare is sent with the time it has left (a duration: the
		// participant's leader dates it by its own clock) and waited for
		// no longer than that.
		ttl := cfg.PrepareTimeout - c.clock.Now().Sub(started)
		if ttl <= 0 {
			vote(shard, prepareReply{Vote: VoteFinished}, nil)
			continue
		}
		cmd := fsm.TxnCmd{ID: id, Primary: plan.shards[0], Participants: plan.shards,
			Deadline: started.Add(cfg.PrepareTimeout).UnixNano(), Body: *plan.parts[shard]}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, ttl)
			defer cancel()
			v, err := c.shards.prepareOn(pctx, shard, cmd, ttl)
			if err != nil && pctx.Err() != nil && ctx.Err() == nil {
				// No answer within the prepare timeout: a no vote. The
				// abort that follows drops the part if it landed anyway.
				v, err = prepareReply{Vote: VoteFinished}, nil
			}
			vote(shard, v, err)
		}()
	}
	wg.Wait()
	return votes, firstErr
}

// abort aborts attempt id on its primary (creating an aborted record if
// the primary never prepared) and drops the other parts in the background.
// When the primary cannot be reached, recovery finishes the job.
func (c *coordinator) abort(id string, shards []string) {
	actx, cancel := detached(c.stop, 5*time.Second)
	defer cancel()
	rec, err := c.shards.decideOn(actx, shards[0], id, fsm.OutcomeAborted, shards)
	if err != nil {
		c.logger.Warn("transaction abort not recorded; recovery will finish it", "txn", id, "error", err)
		return
	}
	c.resolveInBackground(id, rec)
}

// resolveInBackground applies a decided record on every participant but the
// primary (which the decide entry resolved) and then marks the record
// resolved. Failures are left to the recovery loop.
func (c *coordinator) resolveInBackground(id string, rec fsm.Record) {
	if rec.State == fsm.StatePending || len(rec.Participants) == 0 {
		return
	}
	c.spawn(func() {
		ctx, cancel := detached(c.stop, 30*time.Second)
		defer cancel()
		if err := c.resolveAll(ctx, id, rec, true); err != nil {
			c.logger.Debug("transaction resolve incomplete; recovery will finish it", "txn", id, "error", err)
		}
	})
}

// resolveAll resolves every non-primary participant in parallel, then marks
// the record resolved: at once for recovery, through the gathered marks
// (txn_marks.go) for the coordinator. withHook consults the test hook
// (coordinator only).
func (c *coordinator) resolveAll(ctx context.Context, id string, rec fsm.Record, withHook bool) error {
	if len(rec.Participants) == 0 {
		return fmt.Errorf("transaction %s: record lists no participants to resolve", id)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(rec.Participants))
	for i, shard := range rec.Participants[1:] {
		if withHook {
			if err := c.step(StepResolve, id, shard); err != nil {
				errs[i+1] = errAbandoned
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i+1] = c.shards.resolveOn(ctx, shard, id, rec.Outcome())
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if !withHook {
		return c.shards.markResolvedOn(ctx, rec.Participants[0], id)
	}
	if err := c.step(StepMarkResolved, id, rec.Participants[0]); err != nil {
		return errAbandoned
	}
	c.marks.add(c, rec.Participants[0], id)
	return nil
}

// Recovery: what a shard's leader does, through the same participants,
// with a transaction whose coordinator went quiet (txn_recovery.go decides
// when; txn_locks.go for a lock in a request's way).

// finish returns the decided record of id, aborting it first if it is
// still pending or has no record (the primary never prepared). The decide
// entry is conditional, so if the coordinator committed first, the commit
// stands and is returned.
func (c *coordinator) finish(ctx context.Context, primary, id string, participants []string) (fsm.Record, error) {
	rec, err := c.shards.recordOn(ctx, primary, id)
	if err != nil {
		return fsm.Record{}, err
	}
	if rec.Found && rec.Record.State != fsm.StatePending {
		return rec.Record, nil
	}
	return c.shards.decideOn(ctx, primary, id, fsm.OutcomeAborted, participants)
}

// recoverPart finishes the transaction of a part staged on shard: it
// settles the record on the primary (aborting it if undecided), then
// applies or drops the part.
func (c *coordinator) recoverPart(ctx context.Context, shard string, st fsm.Staged) (fsm.Record, error) {
	rec, err := c.finish(ctx, st.Primary, st.ID, recoveryParticipants(st.Primary, shard, st.Participants))
	if err != nil {
		return rec, err
	}
	return rec, c.shards.resolveOn(ctx, shard, st.ID, rec.Outcome())
}

// recoverRecord finishes a transaction from its record on its primary:
// a pending one is aborted, and the decision is resolved on every
// participant, then marked.
func (c *coordinator) recoverRecord(ctx context.Context, r fsm.Record) (fsm.Record, error) {
	if r.State == fsm.StatePending {
		var err error
		if r, err = c.shards.decideOn(ctx, r.Participants[0], r.ID, fsm.OutcomeAborted, r.Participants); err != nil {
			return r, err
		}
	}
	return r, c.resolveAll(ctx, r.ID, r, false)
}

// backoff waits about d (jittered); false if ctx ended or stop closed
// first.
func backoff(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(jittered(d))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-stop:
	}
	return false
}

// detached returns a context that outlives the request (the protocol must
// finish even if the client left) but ends when stop closes or after d.
func detached(stop <-chan struct{}, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-stop:
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
