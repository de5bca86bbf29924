// Package httpapi is raftkv's public HTTP/JSON front end. Handlers are thin:
// decode and validate the request, make one call on the Service, encode the
// answer. Every error leaves through writeError, which maps typed errors to
// status codes in one table (errors.go). The package never touches raft.
package httpapi
