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
// The package owns the listener, the accept loop, the goroutines that read
// headers, and the connections until they are handed to a layer. After that,
// a connection belongs to whoever called Layer.Accept (normally raft).
// See DESIGN.md for the goroutines and the shutdown order.
package mux
