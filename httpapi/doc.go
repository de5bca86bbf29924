// Package httpapi is raftkv's public HTTP/JSON front end. Handlers are thin:
// decode and validate the request, make one call on the Service, encode the
// answer. Every error leaves through writeError, which maps typed errors to
// status codes in one table (errors.go). The package never touches raft.
//
// Streams (GET /v1/events, GET /v1/watch) share one Server-Sent Events
// writer (sse.go). Watches — blocking queries with ?index= and ?wait=, and
// the change stream — are in watch.go; docs/watch.md says what they
// guarantee.
package httpapi
