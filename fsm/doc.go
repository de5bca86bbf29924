// Package fsm is the key/value state machine replicated by each data
// shard's raft group.
//
// The FSM is deterministic: Apply looks only at the log entry and the
// current state, so replicas that apply the same log hold the same keys,
// values and revisions. Revisions are log indexes: a key's ModRevision is
// the index of the entry that last wrote it, which makes them comparable
// across replicas and usable as HTTP ETags.
//
// Log entries are a small versioned envelope (EncodePut, EncodeDelete,
// EncodeNoop, EncodeTxn, Decode). Requests are validated before they are
// proposed, and Apply checks again: a committed entry that is malformed or
// breaks the entry rules is answered with an error and changes nothing,
// while an entry written by a newer raftkv stops the node (a panic with a
// *NewerEntryError) rather than let it skip the entry and diverge.
//
// State lives in a copy-on-write B-tree. Snapshot clones it in O(1) and
// Persist streams the clone in the snapshot package's format while Apply
// continues; Restore verifies a whole checkpoint before it replaces the
// live state. See DESIGN.md for the invariants.
package fsm
