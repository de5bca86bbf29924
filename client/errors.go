package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/raftkv/raftkv/internal/errcode"
)

// Sentinel errors. An *APIError matches the sentinel for its error code, and
// a *RequestError matches ErrTimeout, ErrUnavailable or ErrIndeterminate, so
// callers use errors.Is and never compare error text.
var (
	// ErrUnauthenticated: auth is on and the request carried no valid
	// token (missing, unknown, revoked or expired). 401.
	ErrUnauthenticated = errors.New("raftkv: unauthenticated")
	// ErrPermissionDenied: the token's roles do not allow the request. 403.
	ErrPermissionDenied = errors.New("raftkv: permission denied")
	// ErrNotFound: the key (or, for Leave, the node id) does not exist. 404.
	ErrNotFound = errors.New("raftkv: not found")
	// ErrPrecondition: an If-Match revision or IfAbsent condition failed. 412.
	ErrPrecondition = errors.New("raftkv: precondition failed")
	// ErrConflict: the request conflicts with the current state. 409.
	ErrConflict = errors.New("raftkv: conflict")
	// ErrIdempotencyKeyReused: the idempotency key (WithIdempotencyKey)
	// already names a different request; nothing changed. 422.
	ErrIdempotencyKeyReused = errors.New("raftkv: idempotency key reused for a different request")
	// ErrBadRequest: the server (or the client, before sending) rejected the
	// request as malformed. 400.
	ErrBadRequest = errors.New("raftkv: bad request")
	// ErrRemoved: the node that answered was removed from the cluster and
	// serves nothing; the operation did not happen. A client with other
	// endpoints tries the next one. 410.
	ErrRemoved = errors.New("raftkv: node removed from the cluster")
	// ErrTooLarge: the value exceeds the server's limit. 413.
	ErrTooLarge = errors.New("raftkv: value too large")
	// ErrOverloaded: the shard's leader had too many writes in flight; the
	// write did not happen, retry after APIError.RetryAfter. 429.
	ErrOverloaded = errors.New("raftkv: overloaded")
	// ErrUnavailable: the server had no leader for the shard before the
	// deadline (503), or no endpoint could be reached at all.
	ErrUnavailable = errors.New("raftkv: unavailable")
	// ErrTimeout: the request deadline passed, on the server (504) or in
	// the client.
	ErrTimeout = errors.New("raftkv: timeout")
	// ErrInternal: the server failed in an unexpected way. 500.
	ErrInternal = errors.New("raftkv: internal server error")
	// ErrIndeterminate: a write was sent but its outcome is unknown; it may
	// or may not have been applied. Read the key to find out before retrying
	// a non-idempotent write.
	ErrIndeterminate = errors.New("raftkv: outcome unknown, the write may or may not have been applied")
	// ErrNoEndpoints: the client was created without endpoints.
	ErrNoEndpoints = errors.New("raftkv: no endpoints configured")
)

// Error codes used in the server's error bodies (APIError.Code). The list
// of codes, with their HTTP statuses, is docs/api.md.
const (
	CodeBadRequest         = errcode.BadRequest
	CodeUnauthenticated    = errcode.Unauthenticated
	CodePermissionDenied   = errcode.PermissionDenied
	CodeNotFound           = errcode.NotFound
	CodeMethodNotAllowed   = errcode.MethodNotAllowed
	CodeConflict           = errcode.Conflict
	CodeRemoved            = errcode.Removed
	CodePreconditionFailed = errcode.PreconditionFailed
	CodeTooLarge           = errcode.TooLarge
	CodeOverloaded         = errcode.Overloaded
	CodeUnavailable        = errcode.Unavailable
	CodeTimeout            = errcode.Timeout
	CodeInternal           = errcode.Internal
)

// CodeIdempotencyKeyReused is the code of an idempotency key reused for a
// different request (422).
const CodeIdempotencyKeyReused = errcode.IdempotencyKeyReused

// codeSentinels gives every public error code its sentinel; a test checks
// that it covers exactly the public codes of internal/errcode.
var codeSentinels = map[string]error{
	CodeBadRequest:       ErrBadRequest,
	CodeUnauthenticated:  ErrUnauthenticated,
	CodePermissionDenied: ErrPermissionDenied,
	CodeNotFound:         ErrNotFound,
	// A method the endpoint does not take is a malformed request.
	CodeMethodNotAllowed:   ErrBadRequest,
	CodeConflict:           ErrConflict,
	CodeRemoved:            ErrRemoved,
	CodePreconditionFailed: ErrPrecondition,
	CodeTooLarge:           ErrTooLarge,
	CodeOverloaded:         ErrOverloaded,
	CodeUnavailable:        ErrUnavailable,
	CodeTimeout:            ErrTimeout,
	CodeInternal:           ErrInternal,

	CodeIdempotencyKeyReused: ErrIdempotencyKeyReused,
}

// codeForStatus is used when an error answer has no parsable body (for
// example a proxy in between answered).
func codeForStatus(status int) string { return errcode.ForStatus(status) }

// APIError is an error answer from a raftkv node: the server's error code
// and message, the HTTP status, the leader hint of a key request the node
// could not serve, and whether the operation may have happened anyway.
type APIError struct {
	Status  int    // HTTP status code
	Code    string // error code from the body, e.g. "not_found"
	Message string // human-readable message from the body
	Node    string // id of the node that answered (X-Raftkv-Node), if known
	// RetryAfter is the server's Retry-After hint (with 429 and 503), or
	// zero.
	RetryAfter time.Duration
	// Leader and LeaderAddr are the leader hint of a key request answered
	// 503 or 504 (X-Raftkv-Leader, X-Raftkv-Leader-Addr): the node the
	// answering node believes leads the key's shard, and its HTTP address
	// when registered. Empty when the answer has no hint.
	Leader, LeaderAddr string
	// CurrentRevision is the key's revision when a conditional write failed
	// with 412 on a key that exists (the ETag of the answer), else zero.
	CurrentRevision uint64
	// Index is the shard's raft index the answer was served at
	// (X-Raftkv-Index), when it carries one: on a Get's 404 it is what to
	// pass to WaitIndex to wait for the key to be created.
	Index uint64
	// Indeterminate is set when the operation was a write and the answer
	// does not say whether it happened: any 5xx answer except raftkv's own
	// 503 unavailable, which promises that nothing was done. A 504, a 500,
	// or a 5xx from something in between (a proxy, with no raftkv error
	// body) may hide a write that was applied.
	Indeterminate bool

	// header is the answer's headers, from which a leader-routing client
	// learns who leads the key's shard.
	header http.Header
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "raftkv: %s (%d): %s", e.Code, e.Status, e.Message)
	if e.Node != "" {
		fmt.Fprintf(&b, " [node %s]", e.Node)
	}
	if e.Indeterminate {
		b.WriteString(" (outcome unknown, the write may or may not have been applied)")
	}
	return b.String()
}

// Is reports whether target is the sentinel error for e's code, or
// ErrIndeterminate for an indeterminate write.
func (e *APIError) Is(target error) bool {
	if target == ErrIndeterminate {
		return e.Indeterminate
	}
	code := e.Code
	if _, known := codeSentinels[code]; !known {
		code = codeForStatus(e.Status)
	}
	return codeSentinels[code] == target
}

// RequestError is a failure without a usable answer from the server: no
// endpoint could be reached, the connection broke, the deadline passed, or
// the answer to a write could not be read.
type RequestError struct {
	Op       string // method and path, e.g. "PUT /v1/kv/a"
	Endpoint string // the endpoint of the last attempt
	// Sent is set when the request (its headers at least) may have reached
	// a server before the failure. A request that was not sent (the
	// connection was refused, or could not be opened in time) did nothing.
	Sent bool
	// Indeterminate is set when a write was sent before the failure: it
	// may or may not have been applied. Reads are never indeterminate.
	Indeterminate bool
	// Timeout is set when the failure was the deadline passing.
	Timeout bool
	// Status is the HTTP status of an answer that arrived but could not be
	// read or decoded (the write it answers did happen, but its result is
	// unknown), or 0 when no answer arrived.
	Status int
	Err    error // the underlying cause(s)
}

func (e *RequestError) Error() string {
	var b strings.Builder
	b.WriteString("raftkv: ")
	b.WriteString(e.Op)
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, ": unreadable answer (%d)", e.Status)
	case e.Timeout:
		b.WriteString(": timed out")
	case !e.Sent:
		b.WriteString(": no endpoint reachable")
	default:
		b.WriteString(": connection failed")
	}
	if e.Indeterminate {
		b.WriteString("; outcome unknown, the write may or may not have been applied")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause, so errors.Is(err,
// context.DeadlineExceeded) also works.
func (e *RequestError) Unwrap() error { return e.Err }

// Is matches ErrTimeout, ErrIndeterminate, and ErrUnavailable (no endpoint
// could be reached, or a read's connection failed, before the deadline).
func (e *RequestError) Is(target error) bool {
	switch target {
	case ErrTimeout:
		return e.Timeout
	case ErrIndeterminate:
		return e.Indeterminate
	case ErrUnavailable:
		return !e.Timeout && !e.Indeterminate && e.Status == 0
	}
	return false
}

// Sent reports whether the request of a failed call may have reached a
// server: true for every error answer (*APIError) and for a *RequestError
// with Sent set; false for a request that never left (the connection was
// refused or could not be opened, or the call was refused before sending,
// such as ErrNoEndpoints or a malformed key) and for a nil error.
func Sent(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return true
	}
	var reqErr *RequestError
	return errors.As(err, &reqErr) && reqErr.Sent
}

// Status returns the HTTP status of the answer behind err: the status of an
// *APIError, or of the unreadable answer of a *RequestError; 0 when no
// answer arrived (and for a nil error).
func Status(err error) int {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status
	}
	var reqErr *RequestError
	if errors.As(err, &reqErr) {
		return reqErr.Status
	}
	return 0
}
