package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// The transaction operations a group's leader runs (locally, or for another
// node through /v1/internal/op). Each checks its arguments (validate.go),
// then proposes one entry stamped with this leader's clock: the FSM never
// reads a clock itself.

type txnArgs struct {
	Body fsm.Txn `json:"body"`

	// Once is the idempotency key of a keyed transaction, sent as
	// opTxnOnce (idempotency.go).
	Once *onceArgs `json:"once,omitempty"`
}

type txnReply struct {
	Succeeded bool           `json:"succeeded"`
	Results   []fsm.OpResult `json:"results"`
	Replayed  bool           `json:"replayed,omitempty"`
}

// prepareArgs is a participant's prepare. TTL is how much longer the
// coordinator accepts it, measured by the coordinator's clock when it sent
// it; the participant's leader turns it into a deadline on its own clock
// (Cmd.Deadline), so no two clocks are ever compared. A coordinator from
// before TTLs sends none (0) and an absolute Cmd.Deadline from its clock,
// which is then used as sent; a current coordinator still fills
// Cmd.Deadline, for participants from before TTLs.
type prepareArgs struct {
	Cmd fsm.TxnCmd    `json:"cmd"`
	TTL time.Duration `json:"ttl,omitempty"`
}

// prepareReply is a participant's vote (LockedBy names the transaction
// holding a key when the vote is VoteLocked) and, with VoteYes, whether
// its compares held and the pre-transaction state of its ops.
type prepareReply struct {
	Vote      Vote           `json:"vote"`
	LockedBy  string         `json:"locked_by,omitempty"`
	Succeeded bool           `json:"succeeded"`
	Results   []fsm.OpResult `json:"results"`
}

type decideArgs struct {
	ID           string      `json:"id"`
	Outcome      fsm.Outcome `json:"outcome"`
	Participants []string    `json:"participants"`
}

type recordReply struct {
	Found  bool       `json:"found"`
	Record fsm.Record `json:"record"`
}

// txnResult unwraps a transaction command's response.
func txnResult(resp any) (*fsm.Result, error) {
	r, ok := resp.(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("unexpected apply response %T", resp)
	}
	return r, nil
}

func (n *Node) leaderNow() int64 { return n.clock.Now().UnixNano() }

// txnLocal runs a single-shard transaction, settling or waiting out locks
// held by cross-shard transactions (see applyUnlocked).
func (n *Node) txnLocal(ctx context.Context, g *group, a txnArgs) (txnReply, error) {
	if err := n.validateBody(g, a.Body); err != nil {
		return txnReply{}, err
	}
	if err := n.authorizeTxn(ctx, a.Body); err != nil {
		return txnReply{}, err
	}
	cmd, err := n.wrapOnce(a.Once, fsm.EncodeTxn(fsm.CommandTxn, fsm.TxnCmd{Body: a.Body}))
	if err != nil {
		return txnReply{}, err
	}
	resp, err := n.applyUnlocked(ctx, g, cmd)
	if err != nil {
		return txnReply{}, err
	}
	r, err := txnResult(resp)
	if err != nil {
		return txnReply{}, err
	}
	if err := refused(r); err != nil {
		return txnReply{}, err
	}
	if errors.Is(r.Err, fsm.ErrIdempotencyMismatch) {
		return txnReply{}, reusedKey(r.Err)
	}
	if r.Txn == nil {
		if r.Err != nil {
			return txnReply{}, fsmError("transaction", r.Err)
		}
		return txnReply{}, errors.New("transaction entry returned no result")
	}
	return txnReply{Succeeded: r.Txn.Succeeded, Results: r.Txn.Results, Replayed: r.Replayed}, nil
}

func (n *Node) prepareLocal(ctx context.Context, g *group, a prepareArgs) (prepareReply, error) {
	if err := n.authorizeTxn(ctx, a.Cmd.Body); err != nil {
		return prepareReply{}, err
	}
	if err := n.validatePrepare(g, a); err != nil {
		return prepareReply{}, err
	}
	// Only the fields a prepare uses are proposed; the others (an outcome,
	// a GC cutoff) mean nothing here and could only trip the encoder.
	cmd := fsm.TxnCmd{ID: a.Cmd.ID, Primary: a.Cmd.Primary, Participants: a.Cmd.Participants,
		Deadline: a.Cmd.Deadline, Body: a.Cmd.Body}
	received := n.clock.Now()
	var r *fsm.Result
	// A key held by a transaction that is already decided, but not yet
	// resolved here (its resolve runs in the background), is settled at once
	// and the prepare tried again, rather than voting no and making the
	// coordinator back off. A locked prepare changes nothing, so the retry
	// is safe.
	for try := 0; try < 2; try++ {
		now := n.clock.Now()
		cmd.Now = now.UnixNano()
		if a.TTL > 0 {
			// Now and Deadline both from this leader's clock; the FSM
			// votes "finished" once the TTL has run out.
			cmd.Deadline = cmd.Now + int64(a.TTL-now.Sub(received))
		}
		resp, err := g.apply(ctx, fsm.EncodeTxn(fsm.CommandTxnPrepare, cmd))
		if err != nil {
			return prepareReply{}, err
		}
		if r, err = txnResult(resp); err != nil {
			return prepareReply{}, err
		}
		if !errors.Is(r.Err, fsm.ErrLocked) {
			break
		}
		if settled, err := n.settleLock(ctx, g, r.LockedBy); err != nil || !settled {
			break
		}
	}
	return voteOf(r)
}

// voteOf turns a prepare entry's result into the shard's vote.
func voteOf(r *fsm.Result) (prepareReply, error) {
	switch {
	case errors.Is(r.Err, fsm.ErrLocked):
		return prepareReply{Vote: VoteLocked, LockedBy: r.LockedBy}, nil
	case errors.Is(r.Err, fsm.ErrTxnFinished):
		return prepareReply{Vote: VoteFinished}, nil
	case refused(r) != nil:
		return prepareReply{}, refused(r)
	case r.Err != nil:
		return prepareReply{}, fsmError("prepare", r.Err)
	case r.Txn == nil:
		return prepareReply{}, errors.New("prepare entry returned no result")
	}
	return prepareReply{Vote: VoteYes, Succeeded: r.Txn.Succeeded, Results: r.Txn.Results}, nil
}

func (n *Node) decideLocal(ctx context.Context, g *group, a decideArgs) (fsm.Record, error) {
	if err := n.validateDecide(g, a); err != nil {
		return fsm.Record{}, err
	}
	resp, err := g.apply(ctx, fsm.EncodeTxn(fsm.CommandTxnDecide,
		fsm.TxnCmd{ID: a.ID, Outcome: a.Outcome, Participants: a.Participants, Now: n.leaderNow()}))
	if err != nil {
		return fsm.Record{}, err
	}
	return decidedRecord(a.ID, resp)
}

// decidedRecord turns a decide entry's result into the record it left.
func decidedRecord(id string, resp any) (fsm.Record, error) {
	r, err := txnResult(resp)
	if err != nil {
		return fsm.Record{}, err
	}
	if err := refused(r); err != nil {
		return fsm.Record{}, err
	}
	if r.Err != nil || r.Txn == nil || r.Txn.Record == nil {
		return fsm.Record{}, fmt.Errorf("%w: decide %s: %v", ErrConflict, id, r.Err)
	}
	return *r.Txn.Record, nil
}

// resolveLocal applies a decision to g's part. Which outcome is the real
// one is the record's business (on the primary); here the arguments only
// have to be well formed.
func (n *Node) resolveLocal(ctx context.Context, g *group, a decideArgs) (struct{}, error) {
	if _, err := n.txnPrimary(a.ID); err != nil {
		return struct{}{}, err
	}
	if err := validOutcome(a.Outcome); err != nil {
		return struct{}{}, err
	}
	return struct{}{}, applyChecked(ctx, g, fsm.EncodeTxn(fsm.CommandTxnResolve, fsm.TxnCmd{ID: a.ID, Outcome: a.Outcome, Now: n.leaderNow()}))
}

func (n *Node) markResolvedLocal(ctx context.Context, g *group, a idArgs) (struct{}, error) {
	if err := n.txnOnPrimary(g, a.ID); err != nil {
		return struct{}{}, err
	}
	return struct{}{}, applyChecked(ctx, g, fsm.EncodeTxn(fsm.CommandTxnResolved, fsm.TxnCmd{ID: a.ID, Now: n.leaderNow()}))
}

// applyChecked proposes an entry whose result carries nothing but a
// possible refusal.
func applyChecked(ctx context.Context, g *group, cmd []byte) error {
	resp, err := g.apply(ctx, cmd)
	if err != nil {
		return err
	}
	r, err := txnResult(resp)
	if err != nil {
		return err
	}
	return refused(r)
}

// recordLocal reads a transaction record linearizably.
func (n *Node) recordLocal(ctx context.Context, g *group, a idArgs) (recordReply, error) {
	if a.ID == "" || len(a.ID) > MaxTxnIDBytes {
		return recordReply{}, badRequest("transaction id must be 1..%d bytes", MaxTxnIDBytes)
	}
	if err := g.readBarrier(ctx); err != nil {
		return recordReply{}, err
	}
	rec, ok := g.kv.Record(a.ID)
	return recordReply{Found: ok, Record: rec}, nil
}

// The transaction operations' names on the node-to-node wire. They are
// part of the protocol between versions: never change one.
const (
	opTxn             = "txn"
	opTxnPrepare      = "txn-prepare"
	opTxnDecide       = "txn-decide"
	opTxnResolve      = "txn-resolve"
	opTxnMarkResolved = "txn-resolved"
	opTxnRecord       = "txn-record"
)

// Remote forms: run the operation on the group's current leader.

func (n *Node) prepareOn(ctx context.Context, shard string, cmd fsm.TxnCmd, ttl time.Duration) (prepareReply, error) {
	r, _, err := route(ctx, n, shard, opTxnPrepare, prepareArgs{Cmd: cmd, TTL: ttl}, n.prepareLocal, idempotent)
	return r, err
}

func (n *Node) decideOn(ctx context.Context, primary, id string, o fsm.Outcome, participants []string) (fsm.Record, error) {
	r, _, err := route(ctx, n, primary, opTxnDecide, decideArgs{ID: id, Outcome: o, Participants: participants}, n.decideLocal, idempotent)
	return r, err
}

func (n *Node) resolveOn(ctx context.Context, shard, id string, o fsm.Outcome) error {
	_, _, err := route(ctx, n, shard, opTxnResolve, decideArgs{ID: id, Outcome: o}, n.resolveLocal, idempotent)
	return err
}

func (n *Node) markResolvedOn(ctx context.Context, primary, id string) error {
	_, _, err := route(ctx, n, primary, opTxnMarkResolved, idArgs{id}, n.markResolvedLocal, idempotent)
	return err
}

func (n *Node) recordOn(ctx context.Context, primary, id string) (recordReply, error) {
	r, _, err := route(ctx, n, primary, opTxnRecord, idArgs{id}, n.recordLocal, idempotent)
	return r, err
}
