// Package cluster owns a raftkv node: every raft group hosted by this process
// (the "meta" group holding the node registry, and the data shards
// shard-1..shard-N), the routing of a key to its shard and of an operation to
// the shard's leader, forwarding between nodes, and membership (join, leave,
// leadership transfer).
//
// The package knows nothing about the public HTTP API. It exposes typed
// operations (Put, Get, Delete, List, Join, Leave, ...) that return typed
// errors, and an internal node-to-node handler (see rpc.go) that lets one node
// run an operation on the leader of a group hosted elsewhere. See DESIGN.md for
// the invariants and the goroutines this package owns.
package cluster
