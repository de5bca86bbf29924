package fsm

import (
	"bytes"

	"github.com/tidwall/btree"
)

// The transaction rules. Every function here is deterministic: it reads the
// command (including the leader time written into it) and the state only.
//
//   - A key is locked by at most one transaction, from its prepare on this
//     shard until its resolve here. Put, Delete and single-shard Txn on a
//     locked key fail with ErrLocked and change nothing.
//   - Prepare never waits: a key locked by another transaction makes it
//     vote no (ErrLocked). A transaction already finished here, or a
//     prepare applied after its deadline, votes no (ErrTxnFinished).
//   - A record moves from pending exactly once. Decide on a decided record
//     changes nothing and returns the record, so replays and races between
//     a coordinator and recovery agree on the first decision.
//   - Resolve is idempotent and leaves a finished marker so that a prepare
//     delayed past its resolve votes no instead of locking keys again.

// lockedResult returns the ErrLocked result if key is locked, else nil.
func lockedResult(s *state, key string) *Result {
	if id, ok := s.lock(key); ok {
		return &Result{Err: ErrLocked, LockedBy: id}
	}
	return nil
}

// applyTxn runs a single-shard transaction as one entry.
func applyTxn(s *state, idx uint64, c *TxnCmd) *Result {
	for _, k := range c.Body.Keys() {
		if r := lockedResult(s, k); r != nil {
			return r
		}
	}
	held := comparesHold(s.kv, c.Body.Compares)
	ops := c.Body.Failure
	if held {
		ops = c.Body.Success
	}
	// Every result first describes the state before the transaction, so a
	// get never sees the transaction's own writes.
	res := readOps(s.kv, ops)
	for i, o := range ops {
		if e, ok := writeKey(s, idx, o); ok {
			res[i].KV = e.kv()
		}
	}
	s.detachOps(ops)
	return &Result{Txn: &TxnResult{Succeeded: held, Results: res}}
}

// applyPrepare locks and stages this shard's part of a transaction.
func applyPrepare(s *state, c *TxnCmd) *Result {
	if _, ok := s.done.Get(doneEntry{id: c.ID}); ok {
		return &Result{Err: ErrTxnFinished}
	}
	if st, ok := s.staged.Get(Staged{ID: c.ID}); ok {
		return &Result{Txn: evaluate(s.kv, &st.Part)} // replay: the locked keys cannot have changed
	}
	primary := c.Primary == s.group
	if _, ok := s.records.Get(Record{ID: c.ID}); ok && primary {
		return &Result{Err: ErrTxnFinished} // decided (or aborted by recovery) before this prepare
	}
	if c.Now > c.Deadline {
		return &Result{Err: ErrTxnFinished}
	}
	keys := c.Body.Keys()
	for _, k := range keys {
		if r := lockedResult(s, k); r != nil {
			return r
		}
	}
	st := Staged{ID: c.ID, Primary: c.Primary, Participants: append([]string(nil), c.Participants...),
		PreparedAt: c.Now, Part: cloneTxn(c.Body)}
	s.staged.Set(st)
	for _, k := range keys {
		s.locks.Set(lockEntry{key: k, txn: c.ID})
	}
	if primary {
		s.records.Set(Record{ID: c.ID, State: StatePending, Participants: st.Participants, StartedAt: c.Now})
	}
	return &Result{Txn: evaluate(s.kv, &st.Part)}
}

// applyDecide makes the decision on the primary and resolves its own part.
func applyDecide(s *state, idx uint64, c *TxnCmd) *Result {
	r, ok := s.records.Get(Record{ID: c.ID})
	switch {
	case !ok && c.Outcome != OutcomeAborted:
		return &Result{Err: ErrNoRecord}
	case !ok:
		// Recovery stops a transaction whose primary never prepared: the
		// aborted record makes a late prepare here vote no.
		r = Record{ID: c.ID, State: StateAborted, Participants: append([]string(nil), c.Participants...),
			StartedAt: c.Now, DecidedAt: c.Now}
		s.records.Set(r)
		markDone(s, c.ID, c.Now)
		return &Result{Txn: &TxnResult{Record: ptr(r.clone())}}
	case r.State != StatePending || !c.Outcome.valid():
		return &Result{Txn: &TxnResult{Record: ptr(r.clone())}}
	}
	r.State, r.DecidedAt = StateAborted, c.Now
	if c.Outcome.Committed() {
		r.State, r.Succeeded = StateCommitted, c.Outcome == OutcomeSuccess
	}
	s.records.Set(r)
	resolvePart(s, idx, c.ID, c.Outcome, c.Now)
	return &Result{Txn: &TxnResult{Record: ptr(r.clone())}}
}

// applyResolve applies or drops a participant's part.
func applyResolve(s *state, idx uint64, c *TxnCmd) *Result {
	if c.Outcome.valid() {
		resolvePart(s, idx, c.ID, c.Outcome, c.Now)
	}
	return &Result{}
}

func applyMarkResolved(s *state, c *TxnCmd) *Result {
	r, ok := s.records.Get(Record{ID: c.ID})
	if ok && r.State != StatePending && !r.Resolved {
		r.Resolved = true
		s.records.Set(r)
	}
	return &Result{}
}

// applyGC forgets finished markers and resolved records older than Before.
func applyGC(s *state, c *TxnCmd) *Result {
	var done []doneEntry
	s.done.Scan(func(d doneEntry) bool {
		if d.at < c.Before {
			done = append(done, d)
		}
		return true
	})
	for _, d := range done {
		s.done.Delete(d)
	}
	var recs []Record
	s.records.Scan(func(r Record) bool {
		if r.Resolved && r.DecidedAt < c.Before {
			recs = append(recs, r)
		}
		return true
	})
	for _, r := range recs {
		s.records.Delete(r)
	}
	return &Result{}
}

// resolvePart applies (committed) or drops (aborted) the staged part of
// transaction id, releases its locks and marks it finished here.
func resolvePart(s *state, idx uint64, id string, o Outcome, now int64) {
	if st, ok := s.staged.Get(Staged{ID: id}); ok {
		switch o {
		case OutcomeSuccess:
			writeOps(s, idx, st.Part.Success)
			s.detachOps(st.Part.Success)
		case OutcomeFailure:
			writeOps(s, idx, st.Part.Failure)
			s.detachOps(st.Part.Failure)
		}
		for _, k := range st.Part.Keys() {
			if l, ok := s.locks.Get(lockEntry{key: k}); ok && l.txn == id {
				s.locks.Delete(l)
			}
		}
		s.staged.Delete(st)
	}
	markDone(s, id, now)
}

func markDone(s *state, id string, at int64) {
	if _, ok := s.done.Get(doneEntry{id: id}); !ok {
		s.done.Set(doneEntry{id: id, at: at})
	}
}

// evaluate checks a part's compares and reads the pre-transaction state of
// every op of both branches.
func evaluate(t *btree.BTreeG[entry], part *Txn) *TxnResult {
	return &TxnResult{
		Succeeded: comparesHold(t, part.Compares),
		Results:   append(readOps(t, part.Success), readOps(t, part.Failure)...),
	}
}

func comparesHold(t *btree.BTreeG[entry], cs []Compare) bool {
	for _, c := range cs {
		cur, found := t.Get(entry{key: c.Key})
		if !evalCompare(c, cur, found) {
			return false
		}
	}
	return true
}

func readOps(t *btree.BTreeG[entry], ops []Op) []OpResult {
	res := make([]OpResult, len(ops))
	for i, o := range ops {
		if cur, found := t.Get(entry{key: o.Key}); found {
			res[i] = OpResult{KV: cur.kv(), Found: true}
		} else {
			res[i].KV.Key = o.Key
		}
	}
	return res
}

func writeOps(s *state, idx uint64, ops []Op) {
	for _, o := range ops {
		writeKey(s, idx, o)
	}
}

// writeKey applies one put or delete of a transaction at index idx and
// returns the written entry (ok=false for gets and deletes). A key written
// twice by one entry keeps the version of its first write there, so the
// snapshot invariant version <= mod-create+1 still holds.
func writeKey(s *state, idx uint64, o Op) (entry, bool) {
	switch o.Kind {
	case OpPut:
		cur, found := s.kv.Get(entry{key: o.Key})
		e := entry{key: o.Key, value: bytes.Clone(o.Value), create: idx, mod: idx, version: 1}
		if e.value == nil {
			e.value = []byte{}
		}
		if found {
			e.create, e.version = cur.create, cur.version+1
			if cur.mod == idx {
				e.version = cur.version
			}
		}
		s.kv.Set(e)
		s.recordPut(e)
		return e, true
	case OpDelete:
		if cur, found := s.kv.Delete(entry{key: o.Key}); found {
			s.recordDelete(idx, cur)
		}
	}
	return entry{}, false
}

func ptr[T any](v T) *T { return &v }
