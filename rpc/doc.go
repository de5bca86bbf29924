// Package rpc is raftkv's node-to-node request/response protocol. It runs
// on the raft port, as one more mux layer, so the client HTTP port serves
// only the public API and whatever secures the raft port (mutual TLS)
// secures these calls too.
//
// A request names a raft group and an operation and carries opaque argument
// bytes; the reply carries the id of the node that answered, an error code
// (empty on success) and opaque result bytes. Framing is binary and small;
// the arguments themselves are encoded by the caller (Marshal/Unmarshal use
// msgpack, which carries byte values raw instead of as base64).
//
// A connection carries one call at a time. The Client keeps a pool of idle
// connections per peer; the Server serves each connection on its own
// goroutine and cancels a call's context when its caller hangs up.
package rpc
