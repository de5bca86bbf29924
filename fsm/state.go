package fsm

import (
	"bytes"
	"slices"

	"github.com/tidwall/btree"
)

// state is everything a shard replicates: the keys, and the transaction
// bookkeeping (locks, staged parts, records, finished markers). Each part
// is a copy-on-write B-tree, so copy is O(1) and Persist can stream a copy
// while Apply continues. Values stored in the trees are never modified in
// place: an update stores a new value.
type state struct {
	group   string
	kv      *btree.BTreeG[entry]
	locks   *btree.BTreeG[lockEntry] // key → transaction; derived from staged
	staged  *btree.BTreeG[Staged]    // by ID: prepared parts not yet resolved here
	records *btree.BTreeG[Record]    // by ID: records of transactions whose primary is this shard
	done    *btree.BTreeG[doneEntry] // by ID: transactions resolved here (refuse late prepares)
	idem    *btree.BTreeG[idemEntry] // by key: remembered first results (idempotency.go)
	// hist is the live replica's change history (history.go); nil in
	// copies, which Persist and Fork use and which must not feed it.
	hist *history
	// leases (lease.go): every lease's record, and this shard's keys
	// attached to them, by key and by lease.
	leases   *btree.BTreeG[leaseEntry]
	attached *btree.BTreeG[attachEntry]
	byLease  *btree.BTreeG[attachEntry]
}

// lockEntry says that key is locked by transaction txn.
type lockEntry struct {
	key string
	txn string
}

// doneEntry marks a transaction resolved on this shard at leader time at.
type doneEntry struct {
	id string
	at int64
}

func newState(group string) state {
	opts := btree.Options{NoLocks: true} // the FSM's own lock guards the trees
	leases, attached, byLease := newLeaseTrees()
	return state{
		leases: leases, attached: attached, byLease: byLease,
		group:   group,
		kv:      newTree(),
		locks:   btree.NewBTreeGOptions(func(a, b lockEntry) bool { return a.key < b.key }, opts),
		staged:  btree.NewBTreeGOptions(func(a, b Staged) bool { return a.ID < b.ID }, opts),
		records: btree.NewBTreeGOptions(func(a, b Record) bool { return a.ID < b.ID }, opts),
		done:    btree.NewBTreeGOptions(func(a, b doneEntry) bool { return a.id < b.id }, opts),
		idem:    newIdemTree(),
	}
}

// copy returns a copy-on-write clone. Both copies may be used afterwards;
// the caller needs the write lock because Copy updates bookkeeping.
func (s *state) copy() state {
	return state{group: s.group, kv: s.kv.Copy(), locks: s.locks.Copy(), staged: s.staged.Copy(),
		records: s.records.Copy(), done: s.done.Copy(), idem: s.idem.Copy(),
		leases: s.leases.Copy(), attached: s.attached.Copy(), byLease: s.byLease.Copy()}
}

// lock returns the transaction holding key's lock, if any.
func (s *state) lock(key string) (string, bool) {
	l, ok := s.locks.Get(lockEntry{key: key})
	return l.txn, ok
}

// cloneTxn deep-copies a body decoded from a log entry, whose slices alias
// raft's buffer, before it is stored.
func cloneTxn(t Txn) Txn {
	out := Txn{Compares: slices.Clone(t.Compares), Success: slices.Clone(t.Success), Failure: slices.Clone(t.Failure)}
	for i := range out.Compares {
		out.Compares[i].Value = bytes.Clone(out.Compares[i].Value)
	}
	for _, ops := range [][]Op{out.Success, out.Failure} {
		for i := range ops {
			ops[i].Value = bytes.Clone(ops[i].Value)
		}
	}
	return out
}

func (t Txn) clone() Txn { return cloneTxn(t) }

func (st Staged) clone() Staged {
	st.Participants = slices.Clone(st.Participants)
	st.Part = st.Part.clone()
	return st
}

// Lock returns the id of the transaction holding key's lock, if any.
func (f *FSM) Lock(key string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.lock(key)
}

// Record returns the record of a transaction whose primary is this shard.
func (f *FSM) Record(id string) (Record, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.st.records.Get(Record{ID: id})
	return r.clone(), ok
}

// Staged returns this shard's prepared, unresolved part of a transaction.
func (f *FSM) Staged(id string) (Staged, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st, ok := f.st.staged.Get(Staged{ID: id})
	return st.clone(), ok
}

// TxnSummary lists, for recovery, the staged parts prepared here and the
// records kept here, each without its body.
type TxnSummary struct {
	Staged  []Staged // Part left empty
	Records []Record
	// LockCount and DoneCount are the sizes of the lock table and of the
	// finished-transaction markers.
	LockCount, DoneCount int
	// OldestDone is the earliest finished-marker time (0 when none).
	OldestDone int64
}

// Transactions returns a summary of the transaction state.
func (f *FSM) Transactions() TxnSummary {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out TxnSummary
	f.st.staged.Scan(func(st Staged) bool {
		st.Part = Txn{}
		out.Staged = append(out.Staged, st.clone())
		return true
	})
	f.st.records.Scan(func(r Record) bool {
		out.Records = append(out.Records, r.clone())
		return true
	})
	f.st.done.Scan(func(d doneEntry) bool {
		if out.OldestDone == 0 || d.at < out.OldestDone {
			out.OldestDone = d.at
		}
		return true
	})
	out.LockCount, out.DoneCount = f.st.locks.Len(), f.st.done.Len()
	return out
}
