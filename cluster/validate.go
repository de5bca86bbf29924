package cluster

import (
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/raftkv/raftkv/fsm"
)

// Argument checks for the operations a group's leader runs, locally or for
// another node (the *Local functions of kv.go and txn_ops.go). The public
// entry points check their input too, but a forwarded call arrives as JSON
// from the network, and an argument nobody checked would reach an encoder
// that panics on it (an undefined condition kind or outcome), or commit an
// entry that every replica refuses, or put a key on a shard that does not
// own it. Every failure wraps ErrBadRequest (ErrTooLarge for sizes, as in
// Put and Txn) and nothing is proposed.

// MaxListLimit is the largest page a listing returns.
const MaxListLimit = 10000

// MaxTxnIDBytes bounds a transaction id. Ids are "<primary>.<16 hex>".
const MaxTxnIDBytes = 256

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// validCond refuses a condition kind fsm.EncodePut would panic on.
func validCond(c fsm.Condition) error {
	switch c.Kind {
	case fsm.CondNone, fsm.CondRevision, fsm.CondAbsent:
		return nil
	}
	return badRequest("undefined condition kind %d", c.Kind)
}

// validOutcome accepts the three decisions; 0 ("pending") decides nothing.
func validOutcome(o fsm.Outcome) error {
	switch o {
	case fsm.OutcomeAborted, fsm.OutcomeSuccess, fsm.OutcomeFailure:
		return nil
	}
	return badRequest("undefined transaction outcome %d", o)
}

// ownKey checks a key and that g is the shard that owns it.
func (n *Node) ownKey(g *group, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if s := n.ShardOf(key); s != g.name {
		return badRequest("key %q belongs to %s, not %s", key, s, g.name)
	}
	return nil
}

// validateListArgs bounds a listing page.
func validateListArgs(a listArgs) error {
	switch {
	case a.Limit < 1 || a.Limit > MaxListLimit:
		return badRequest("limit must be between 1 and %d, not %d", MaxListLimit, a.Limit)
	case len(a.Prefix) > MaxKeyBytes || len(a.After) > MaxKeyBytes:
		return badRequest("prefix and after are at most %d bytes", MaxKeyBytes)
	case !utf8.ValidString(a.Prefix) || !utf8.ValidString(a.After):
		return badRequest("prefix and after must be valid UTF-8")
	}
	return nil
}

// txnPrimary checks a transaction id and returns the shard it names as its
// primary.
func (n *Node) txnPrimary(id string) (string, error) {
	if id == "" || len(id) > MaxTxnIDBytes {
		return "", badRequest("transaction id must be 1..%d bytes", MaxTxnIDBytes)
	}
	primary, ok := n.primaryOf(id)
	if !ok {
		return "", badRequest("transaction id %q does not name a shard of this cluster", id)
	}
	return primary, nil
}

// txnOnPrimary checks that id is a transaction whose primary is g.
func (n *Node) txnOnPrimary(g *group, id string) error {
	primary, err := n.txnPrimary(id)
	if err == nil && primary != g.name {
		err = badRequest("transaction %s has its record on %s, not %s", id, primary, g.name)
	}
	return err
}

// validateParticipants checks a participant list: shards of this cluster,
// each once, primary first.
func (n *Node) validateParticipants(ps []string, primary string) error {
	if len(ps) == 0 {
		return badRequest("a transaction has at least one participant")
	}
	if ps[0] != primary {
		return badRequest("participants must start with the primary %s, not %s", primary, ps[0])
	}
	for i, p := range ps {
		if g, ok := n.groups[p]; !ok || g.kv == nil {
			return badRequest("participant %q is not a shard of this cluster", p)
		}
		if slices.Contains(ps[:i], p) {
			return badRequest("participant %s listed twice", p)
		}
	}
	return nil
}

// validateBody applies Txn's input rules to a transaction body, or one
// shard's part of it, and checks that every key belongs to g.
func (n *Node) validateBody(g *group, t fsm.Txn) error {
	if err := n.validateTxn(TxnRequest{Compares: t.Compares, Success: t.Success, Failure: t.Failure}); err != nil {
		return err
	}
	for _, k := range t.Keys() {
		if err := n.ownKey(g, k); err != nil {
			return err
		}
	}
	return nil
}

// validatePrepare checks a participant's prepare on g.
func (n *Node) validatePrepare(g *group, a prepareArgs) error {
	if a.TTL < 0 {
		return badRequest("prepare of %s: negative time to live %s", a.Cmd.ID, a.TTL)
	}
	c := a.Cmd
	primary, err := n.txnPrimary(c.ID)
	if err != nil {
		return err
	}
	if c.Primary != primary {
		return badRequest("transaction %s names primary %q, its id says %s", c.ID, c.Primary, primary)
	}
	if err := n.validateParticipants(c.Participants, primary); err != nil {
		return err
	}
	if !slices.Contains(c.Participants, g.name) {
		return badRequest("%s is not a participant of transaction %s", g.name, c.ID)
	}
	return n.validateBody(g, c.Body)
}

// validateDecide checks a decision proposed on the primary g.
func (n *Node) validateDecide(g *group, a decideArgs) error {
	if err := n.txnOnPrimary(g, a.ID); err != nil {
		return err
	}
	if err := validOutcome(a.Outcome); err != nil {
		return err
	}
	return n.validateParticipants(a.Participants, g.name)
}

// fsmError maps a state machine's refusal to this package's errors, so it
// keeps its meaning (and its HTTP status) on the way out: a locked key or a
// finished transaction is a conflict, a missing record is not found, a bad
// entry a bad request, a failed condition stays one. Anything else is
// wrapped as it is.
func fsmError(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fsm.ErrPrecondition):
		return err
	case errors.Is(err, fsm.ErrLocked), errors.Is(err, fsm.ErrTxnFinished):
		return fmt.Errorf("%w: %s: %w", ErrConflict, what, err)
	case errors.Is(err, fsm.ErrNoRecord):
		return fmt.Errorf("%w: %s: %w", ErrNotFound, what, err)
	case errors.Is(err, fsm.ErrInvalid), errors.Is(err, fsm.ErrMalformed):
		return fmt.Errorf("%w: %s: %w", ErrBadRequest, what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// refused turns the FSM's verdict on an entry it would not apply into
// ErrBadRequest; it returns nil for every other result.
func refused(r *fsm.Result) error {
	if errors.Is(r.Err, fsm.ErrInvalid) || errors.Is(r.Err, fsm.ErrMalformed) {
		return fmt.Errorf("%w: %v", ErrBadRequest, r.Err)
	}
	return nil
}
