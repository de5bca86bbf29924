// Package registry is the state machine of the cluster's "meta" raft
// group: the node registry (each node's HTTP and raft addresses) and the
// settings fixed at bootstrap (cluster id and shard count).
//
// It follows the same rules as package fsm: Apply is deterministic, log
// entries are a versioned tagged envelope, and checkpoints use the
// snapshot package's format (kind "registry"), verified in full before
// they replace live state.
//
// A command that does not decode, asks for something invalid (an empty
// node id, a shard count out of range) or belongs to the data shards (a
// put or transaction proposed into the wrong group) is not a reason to
// stop: every replica reaches the same verdict, so it is reported in
// Result.Err and the state is left unchanged. Only an entry written by a
// newer raftkv (an envelope version or command type this build does not
// know) stops the node, with a panic carrying a *NewerEntryError. See
// DESIGN.md.
package registry
