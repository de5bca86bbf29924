// Package mux lets every raft group on a node share one TCP port.
//
// A node runs several independent raft groups ("meta", "shard-1" ...), each
// with its own raft.NetworkTransport. Rather than open a port per group, the
// node opens one listener through Listen and registers each group with
// Mux.Layer, which returns a raft.StreamLayer for that group's transport.
//
// Every new connection starts with a short header written by the dialer:
//
//	"RKVM" | version (1 byte, = 1) | n (1 byte, 1..64) | group name (n ASCII bytes)
//
// The acceptor reads the header and hands the rest of the connection, byte
// for byte, to the layer registered for that group. A bad header or an
// unknown group closes the connection and is logged.
//
// With ListenConfig and a Config carrying TLS, every connection is mutual
// TLS: the acceptor completes the handshake before it reads the header, and
// Layer.Dial before it writes one, so the header and everything after it
// travel encrypted and only peers with a certificate the server accepts
// reach a layer. Listen opens the plaintext mux.
//
// The package owns the listener, the accept loop, the goroutines that run
// handshakes and read headers, the limits on connections that have not yet
// been handed to a layer (time and count), and those connections until they
// are handed over. After that, a connection belongs to whoever called
// Layer.Accept (normally raft). See DESIGN.md for the goroutines, the
// shutdown order, TLS and the limits.
package mux
