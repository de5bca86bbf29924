package fsm

import (
	"errors"
	"fmt"
	"github.com/raftkv/raftkv/internal/wire"

	"github.com/hashicorp/raft"
	"github.com/raftkv/raftkv/snapshot"
)

// MaxEntryBytes bounds the size of a command Apply accepts. Every record a
// checkpoint writes for the state an entry creates (a key, a staged part, a
// record) is at most a few dozen bytes longer than the entry, so this keeps
// whatever Apply accepts under snapshot.MaxRecordSize: a checkpoint of it
// can always be written and read back.
const MaxEntryBytes = snapshot.MaxRecordSize - 1024

// ErrInvalid is Result.Err for a command that decodes but breaks a rule no
// proposer following this package's encoders would break: an empty key or
// transaction id, a decision without an outcome or participants, an entry
// over MaxEntryBytes. Nothing changed. Like a malformed entry (ErrMalformed
// in Result.Err), every replica reaches the same verdict, so the entry is
// counted as applied and the replica carries on.
var ErrInvalid = errors.New("fsm: invalid command")

// NewerEntryError reports a committed entry written by a newer raftkv; the
// state machine stops the node with it (wire.NewerEntryError).
type NewerEntryError = wire.NewerEntryError

// applyEntry applies one LogCommand entry to s. A malformed or invalid
// command yields a Result carrying the error and changes nothing; the only
// error returned is a *NewerEntryError, which the caller must not get past.
func applyEntry(s *state, l *raft.Log) (*Result, error) {
	c, err := Decode(l.Data)
	switch {
	case errors.Is(err, ErrUnknownVersion), errors.Is(err, ErrUnknownCommand):
		return nil, &NewerEntryError{Machine: "fsm", Group: s.group, Index: l.Index, Version: l.Data[0], Known: CommandVersion, Type: l.Data[1], Err: err}
	case err != nil:
		return &Result{Err: err}, nil
	}
	if len(l.Data) > MaxEntryBytes {
		return &Result{Err: fmt.Errorf("%w: %v entry of %d bytes, the limit is %d", ErrInvalid, c.Type, len(l.Data), MaxEntryBytes)}, nil
	}
	if err := checkCommand(c); err != nil {
		return &Result{Err: fmt.Errorf("%w: %v: %v", ErrInvalid, c.Type, err)}, nil
	}
	if c.Idem != nil {
		// A replayed result keeps the index and term of its first entry.
		r := applyIdem(s, l.Index, l.Term, c)
		if !r.Replayed {
			r.Index, r.Term = l.Index, l.Term
		}
		return r, nil
	}
	if fenced(c, l.Term) {
		// The fence reads the entry's term, which applyCommand does not
		// see: a revoke decided under one leadership, proposed under a
		// later one, changes nothing.
		return &Result{Err: fmt.Errorf("%w: decided in term %d, entry of term %d", ErrLeaseFenced, c.Lease.Term, l.Term), Index: l.Index, Term: l.Term}, nil
	}
	r := applyCommand(s, l.Index, c)
	r.Index, r.Term = l.Index, l.Term
	return r, nil
}

// checkCommand enforces the rules that keep the state within what a
// checkpoint can hold and what recovery can act on. Decode has already
// checked the enumerations; these are the rules between fields.
func checkCommand(c Command) error {
	switch c.Type {
	case CommandPut, CommandDelete:
		if c.Key == "" {
			return errors.New("empty key")
		}
		return nil
	case CommandNoop:
		return nil
	case CommandLeaseGrant, CommandLeaseRevoke, CommandLeasePut:
		return checkLease(c)
	case CommandIdempotent, CommandIdempotentDecide, CommandIdempotencyGC:
		return checkIdem(c)
	case CommandDeletePrefix:
		if c.Cond.Kind != CondNone {
			return errors.New("a prefix delete takes no condition")
		}
		return nil
	}
	t := c.Txn
	switch c.Type {
	case CommandTxn:
		return checkBody(&t.Body)
	case CommandTxnPrepare:
		if err := checkTxnID(t.ID); err != nil {
			return err
		}
		if t.Primary == "" {
			return errors.New("empty primary")
		}
		if err := checkParticipants(t.Participants); err != nil {
			return err
		}
		if t.Participants[0] != t.Primary {
			return fmt.Errorf("primary %q is not the first participant %q", t.Primary, t.Participants[0])
		}
		return checkBody(&t.Body)
	case CommandTxnDecide:
		if err := checkTxnID(t.ID); err != nil {
			return err
		}
		if !t.Outcome.valid() {
			return fmt.Errorf("outcome %d", t.Outcome)
		}
		return checkParticipants(t.Participants)
	case CommandTxnResolve:
		if err := checkTxnID(t.ID); err != nil {
			return err
		}
		if !t.Outcome.valid() {
			return fmt.Errorf("outcome %d", t.Outcome)
		}
		return nil
	case CommandTxnResolved:
		return checkTxnID(t.ID)
	case CommandTxnGC:
		return nil
	}
	return fmt.Errorf("no rules for %v", c.Type) // Decode returns no other type
}

func checkTxnID(id string) error {
	if id == "" {
		return errors.New("empty transaction id")
	}
	return nil
}

// checkParticipants: a decided record is resolved by visiting every
// participant, primary first, so the list is never empty nor holds an
// unnamed group.
func checkParticipants(ps []string) error {
	if len(ps) == 0 {
		return errors.New("no participants")
	}
	for i, p := range ps {
		if p == "" {
			return fmt.Errorf("participant %d has no name", i)
		}
	}
	return nil
}

// checkBody refuses unnamed keys, which no client request can carry.
func checkBody(t *Txn) error {
	for _, c := range t.Compares {
		if c.Key == "" {
			return errors.New("compare on an empty key")
		}
	}
	for _, ops := range [][]Op{t.Success, t.Failure} {
		for _, o := range ops {
			if o.Key == "" {
				return fmt.Errorf("%v of an empty key", o.Kind)
			}
		}
	}
	return nil
}
