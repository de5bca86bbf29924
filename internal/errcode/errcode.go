// Package errcode is raftkv's error vocabulary: every error code a node
// sends, to another node or in an HTTP error body, with its HTTP status and
// meaning. It is the one copy of that table. Package cluster maps its
// sentinel errors to these codes, httpapi takes the status from here, and
// client maps the codes to its own sentinels; each package's tests check
// its mapping against List, so the copies cannot drift. docs/api.md
// documents the public codes.
//
// The package is a leaf (it imports only net/http), so client can use it
// without importing cluster.
package errcode

import "net/http"

// The error codes. Each string is part of the wire format and the HTTP API:
// never change one.
const (
	BadRequest         = "bad_request"
	Unauthenticated    = "unauthenticated"
	PermissionDenied   = "permission_denied"
	NotFound           = "not_found"
	MethodNotAllowed   = "method_not_allowed"
	Conflict           = "conflict"
	Removed            = "removed"
	PreconditionFailed = "precondition_failed"
	TooLarge           = "too_large"
	Overloaded         = "overloaded"
	Unavailable        = "unavailable"
	Timeout            = "timeout"
	OutcomeUnknown     = "outcome_unknown"
	NotLeader          = "not_leader"
	Internal           = "internal"
)

// IdempotencyKeyReused: an Idempotency-Key already names another request.
// Never change it either.
const IdempotencyKeyReused = "idempotency_key_reused"

// Info describes one error code.
type Info struct {
	Code string
	// Status is the HTTP status of an answer with this error.
	Status int
	// Public is the code an HTTP client sees in the error body. It is Code
	// itself except for the codes nodes use only among themselves, which
	// are shown to clients as the public code that means the same to them.
	Public string
	// Internal is set for codes that only travel between nodes.
	Internal bool
	// RetryAfter is set when the answer carries a Retry-After header: the
	// operation did not happen and may be retried after a pause.
	RetryAfter bool
	// Meaning is the one-line explanation docs/api.md gives.
	Meaning string
}

// list is the table, in the order docs/api.md shows the public codes.
var list = []Info{
	{Code: BadRequest, Status: http.StatusBadRequest, Public: BadRequest,
		Meaning: "the request is invalid; nothing changed"},
	{Code: Unauthenticated, Status: http.StatusUnauthorized, Public: Unauthenticated,
		Meaning: "auth is on and the request has no valid bearer token (missing, unknown, revoked or expired)"},
	{Code: PermissionDenied, Status: http.StatusForbidden, Public: PermissionDenied,
		Meaning: "the token's roles do not allow this on this key or operation; nothing changed"},
	{Code: NotFound, Status: http.StatusNotFound, Public: NotFound,
		Meaning: "no such key, node, group or endpoint"},
	{Code: MethodNotAllowed, Status: http.StatusMethodNotAllowed, Public: MethodNotAllowed,
		Meaning: "the path exists but not with this method"},
	{Code: Conflict, Status: http.StatusConflict, Public: Conflict,
		Meaning: "the request clashes with the cluster (e.g. removing the last voter)"},
	{Code: Removed, Status: http.StatusGone, Public: Removed,
		Meaning: "this node was removed from the cluster and serves no data; the operation did not happen: ask another node, and wipe this one's data dir before it joins again"},
	{Code: PreconditionFailed, Status: http.StatusPreconditionFailed, Public: PreconditionFailed,
		Meaning: "an If-Match/If-None-Match condition failed; nothing changed"},
	{Code: IdempotencyKeyReused, Status: http.StatusUnprocessableEntity, Public: IdempotencyKeyReused,
		Meaning: "the Idempotency-Key was first used, within the retention window, for a different request (another method, key, value, condition or transaction body); nothing changed"},
	{Code: TooLarge, Status: http.StatusRequestEntityTooLarge, Public: TooLarge,
		Meaning: "the value or the request body is over its limit; nothing changed"},
	{Code: Overloaded, Status: http.StatusTooManyRequests, Public: Overloaded, RetryAfter: true,
		Meaning: "the shard's leader already holds --max-pending-writes writes in flight, or the node already stages --max-concurrent-backups backups; the operation did not happen"},
	{Code: Unavailable, Status: http.StatusServiceUnavailable, Public: Unavailable, RetryAfter: true,
		Meaning: "no leader reachable before the deadline, the node is stopping, or it already serves --max-concurrent-requests requests; the operation did not happen"},
	{Code: Timeout, Status: http.StatusGatewayTimeout, Public: Timeout,
		Meaning: "the deadline passed, or leadership was lost, after the write may have been proposed: it may or may not have happened"},
	{Code: Internal, Status: http.StatusInternalServerError, Public: Internal,
		Meaning: "a bug; the message says what"},
	// Between nodes only. outcome_unknown stays apart from timeout so that
	// a forwarding node can tell "may have happened" (which a read may
	// retry) from a deadline; a client is told timeout, which promises it
	// the same.
	{Code: OutcomeUnknown, Status: http.StatusGatewayTimeout, Public: Timeout, Internal: true,
		Meaning: "leadership was lost or a forwarded request broke after it was sent: it may or may not have happened"},
	// The routing loop retries on the current leader, so a client never
	// sees not_leader; if one reaches the HTTP layer it is a bug.
	{Code: NotLeader, Status: http.StatusInternalServerError, Public: Internal, Internal: true,
		Meaning: "this node is not the group's leader"},
}

// List returns every code, public ones first. The slice is a copy.
func List() []Info { return append([]Info(nil), list...) }

// Lookup returns the entry of code.
func Lookup(code string) (Info, bool) {
	for _, e := range list {
		if e.Code == code {
			return e, true
		}
	}
	return Info{}, false
}

// HTTP returns the public code and HTTP status of an answer carrying code;
// a code not in the table is internal, 500.
func HTTP(code string) (public string, status int) {
	if e, ok := Lookup(code); ok {
		return e.Public, e.Status
	}
	return Internal, http.StatusInternalServerError
}

// ForStatus returns the public code an HTTP status stands for, for an error
// answer without a body to read it from (say, from a proxy in between):
// the code with that status, internal for another 5xx, bad_request for
// another 4xx.
func ForStatus(status int) string {
	for _, e := range list {
		if !e.Internal && e.Status == status {
			return e.Code
		}
	}
	if status >= 500 {
		return Internal
	}
	return BadRequest
}
