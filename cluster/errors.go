package cluster

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/errcode"
	"github.com/raftkv/raftkv/registry"
)

// Errors returned by Node operations. Callers match them with errors.Is. Each
// carries a stable code (see errorCodes and Code) so an error raised on a
// remote leader arrives at the node that forwarded the request as the same
// sentinel; the HTTP layer answers with the status internal/errcode gives
// that code.
var (
	// ErrBadRequest: the input is invalid; nothing was proposed.
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthenticated: auth is on and the caller has no valid token.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the caller's roles do not allow the operation.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNotFound: the key, node or group does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request clashes with the cluster's state (for example
	// removing the last voter).
	ErrConflict = errors.New("conflict")
	// ErrPrecondition: an If-Match / If-None-Match condition failed; nothing
	// changed. It is the fsm's sentinel so the check done at apply time matches.
	ErrPrecondition = fsm.ErrPrecondition
	// ErrRemoved: this node is no longer a member of the cluster (it left,
	// was removed as dead, or was left out of an outage recovery), so its
	// replicas are stale and nothing is served from them; the operation
	// did not happen. Removal.Error says how to bring the node back.
	ErrRemoved = errors.New("removed from the cluster")
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

// errorCodes gives each sentinel its code from the vocabulary in
// internal/errcode (which also gives the code its HTTP status); the order
// matters only in that more specific errors come first.
var errorCodes = []struct {
	err  error
	code string
}{
	{ErrBadRequest, errcode.BadRequest},
	{ErrNotFound, errcode.NotFound},
	{registry.ErrUnknownNode, errcode.NotFound},
	{registry.ErrNotFound, errcode.NotFound},
	{registry.ErrInvalid, errcode.BadRequest},
	{ErrUnauthenticated, errcode.Unauthenticated},
	{ErrPermissionDenied, errcode.PermissionDenied},
	{ErrConflict, errcode.Conflict},
	{ErrRemoved, errcode.Removed},
	{ErrPrecondition, errcode.PreconditionFailed},
	{ErrIdempotencyKeyReused, errcode.IdempotencyKeyReused},
	{ErrTooLarge, errcode.TooLarge},
	{ErrUnavailable, errcode.Unavailable},
	{ErrOverloaded, errcode.Overloaded},
	{ErrTimeout, errcode.Timeout},
	// Apart from ErrTimeout so that the forwarding node can still tell "may
	// have happened" (which a read may retry) from a deadline.
	{ErrIndeterminate, errcode.OutcomeUnknown},
	{errNotLeader, errcode.NotLeader},
}

// Code returns the wire code of err ("internal" if it is none of ours).
func Code(err error) string {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return errcode.Internal
}

// errorFromCode rebuilds a typed error received from another node. Its
// text is the sender's, which already names what went wrong ("precondition
// failed: ..."): adding the sentinel's text again would say it twice.
func errorFromCode(code, msg string) error {
	for _, e := range errorCodes {
		if e.code == code {
			return &remoteError{kind: e.err, msg: msg}
		}
	}
	return errors.New(msg)
}

// remoteError is an error another node answered: its message, and the
// sentinel its code stands for, for errors.Is.
type remoteError struct {
	kind error
	msg  string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

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
