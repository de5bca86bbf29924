package cluster

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/registry"
)

// Errors returned by Node operations. Callers match them with errors.Is; the
// HTTP layer maps each to a status code in one table. Each carries a stable
// wire code (see errorCodes) so an error raised on a remote leader arrives at
// the node that forwarded the request as the same sentinel.
var (
	// ErrBadRequest: the input is invalid; nothing was proposed.
	ErrBadRequest = errors.New("bad request")
	// ErrNotFound: the key, node or group does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request clashes with the cluster's state (for example
	// removing the last voter).
	ErrConflict = errors.New("conflict")
	// ErrPrecondition: an If-Match / If-None-Match condition failed; nothing
	// changed. It is the fsm's sentinel so the check done at apply time matches.
	ErrPrecondition = fsm.ErrPrecondition
	// ErrTooLarge: a value exceeds the configured limit; nothing was proposed.
	ErrTooLarge = errors.New("too large")
	// ErrUnavailable: no leader could be reached before the deadline, or the
	// node is shutting down. The operation did not happen; it is safe to retry.
	ErrUnavailable = errors.New("unavailable")
	// ErrOverloaded: the group's leader already has as many writes in flight
	// as it accepts (Config.MaxPendingWrites); nothing was proposed, retry
	// after a pause.
	ErrOverloaded = errors.New("overloaded")
	// ErrTimeout: the deadline passed after the operation may have been
	// proposed. The write may or may not have happened.
	ErrTimeout = errors.New("timeout")
	// ErrIndeterminate: leadership was lost or a forwarded request broke after
	// it was sent. The write may or may not have happened.
	ErrIndeterminate = errors.New("outcome unknown")
	// errNotLeader is internal: this node is not the group's leader. The
	// routing loop retries on the current leader; it never reaches a client.
	errNotLeader = errors.New("not leader")
)

// errorCodes gives each sentinel its wire code; the order matters only in that
// more specific errors come first.
var errorCodes = []struct {
	err  error
	code string
}{
	{ErrBadRequest, "bad_request"},
	{ErrNotFound, "not_found"},
	{registry.ErrUnknownNode, "not_found"},
	{ErrConflict, "conflict"},
	{ErrPrecondition, "precondition_failed"},
	{ErrTooLarge, "too_large"},
	{ErrUnavailable, "unavailable"},
	{ErrOverloaded, "overloaded"},
	{ErrTimeout, "timeout"},
	// Apart from ErrTimeout so that the forwarding node can still tell "may
	// have happened" (which a read may retry) from a deadline.
	{ErrIndeterminate, "outcome_unknown"},
	{errNotLeader, "not_leader"},
}

// Code returns the wire code of err ("internal" if it is none of ours).
func Code(err error) string {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return "internal"
}

// errorFromCode rebuilds a typed error received from another node.
func errorFromCode(code, msg string) error {
	for _, e := range errorCodes {
		if e.code == code {
			return fmt.Errorf("%w: %s", e.err, msg)
		}
	}
	return errors.New(msg)
}

// PreconditionError is returned when a conditional write fails. It carries the
// key's current state so the caller can report the current revision.
type PreconditionError struct {
	Current fsm.KV
	Found   bool
}

func (e *PreconditionError) Error() string {
	if !e.Found {
		return "precondition failed: key does not exist"
	}
	return fmt.Sprintf("precondition failed: current revision is %d", e.Current.ModRevision)
}

// Unwrap lets errors.Is(err, ErrPrecondition) match.
func (e *PreconditionError) Unwrap() error { return ErrPrecondition }
