// Package registry is the state machine of the cluster's "meta" raft
// group: the node registry (each node's HTTP and raft addresses) and the
// settings fixed at bootstrap (cluster id and shard count).
//
// It follows the same rules as package fsm: Apply is deterministic, log
// entries are a versioned tagged envelope, and checkpoints use the
// snapshot package's format (kind "registry"), verified in full before
// they replace live state.
//
// Unlike the data shards, a command that decodes but asks for something
// invalid (an empty node id, a shard count out of range) is not a reason to
// stop: every replica reaches the same verdict, so it is reported in
// Result.Err and the state is left unchanged. Only an entry that does not
// decode at all panics, since that means version skew or corruption.
package registry
