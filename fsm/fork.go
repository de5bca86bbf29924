package fsm

// What a backup needs to form a consistent cut across shards (see
// cluster/backup_cut.go): an independent copy of a replica's state that it
// can roll forward through log entries without touching the live replica,
// and a cheap look at which transactions a state leaves unfinished.

// Fork returns an independent FSM holding this one's state at its current
// applied index, in O(1): the trees are copy-on-write clones, so entries
// later applied to either FSM never show in the other. The fork is not
// attached to raft; its owner applies entries to it with ApplyBatch.
func (f *FSM) Fork() *FSM {
	// Copy updates the trees' bookkeeping: it needs the write lock.
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &FSM{group: f.group, st: f.st.copy(), term: f.term}
	c.applied.Set(f.applied.Load())
	return c
}

// Finished reports whether transaction id has been resolved on this shard
// (its finished marker is kept until GC).
func (f *FSM) Finished(id string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.st.done.Get(doneEntry{id: id})
	return ok
}

// Unfinished returns the ids of the transactions this state leaves open:
// every staged part, and every record kept here that is still pending, in
// id order each.
func (f *FSM) Unfinished() (staged, pending []string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.st.staged.Scan(func(s Staged) bool {
		staged = append(staged, s.ID)
		return true
	})
	f.st.records.Scan(func(r Record) bool {
		if r.State == StatePending {
			pending = append(pending, r.ID)
		}
		return true
	})
	return staged, pending
}
