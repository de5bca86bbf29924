package fsm

import (
	"bytes"
	"strings"

	"github.com/tidwall/btree"
)

// entry is one key's stored state. Entries are stored by value in the tree
// and a stored value slice is never written to after insertion; that is what
// lets a copy-on-write clone be read by Persist while Apply continues.
type entry struct {
	key     string
	value   []byte
	create  uint64 // log index at which the key was (re)created
	mod     uint64 // log index of the latest write
	version uint64 // writes since creation, starting at 1
}

func lessEntry(a, b entry) bool { return a.key < b.key }

func newTree() *btree.BTreeG[entry] {
	// The FSM guards the tree with its own lock, so the tree's is redundant.
	return btree.NewBTreeGOptions(lessEntry, btree.Options{NoLocks: true})
}

// kv returns the public form of e with its own copy of the value, so
// callers may keep or modify it freely.
func (e entry) kv() KV {
	return KV{Key: e.key, Value: bytes.Clone(e.value), CreateRevision: e.create, ModRevision: e.mod, Version: e.version}
}

// applyCommand applies one decoded command, committed at log index idx, to
// s. It is the whole deterministic core of the state machine: it reads only
// its arguments (no clock, no randomness, no map order), so every replica
// that applies the same entries ends in the same state. Recovery and
// inspection tools can replay a log through it without a raft instance.
func applyCommand(s *state, idx uint64, c Command) *Result {
	switch c.Type {
	case CommandPut:
		if r := lockedResult(s, c.Key); r != nil {
			return r
		}
		r := applyPut(s, idx, c)
		if r.Err == nil {
			s.detach(c.Key)
		}
		return r
	case CommandDelete:
		if r := lockedResult(s, c.Key); r != nil {
			return r
		}
		r := applyDelete(s, idx, c)
		if r.Deleted {
			s.detach(c.Key)
		}
		return r
	case CommandNoop:
		return &Result{}
	case CommandDeletePrefix:
		return applyDeletePrefix(s, idx, c.Key)
	case CommandTxn:
		return applyTxn(s, idx, c.Txn)
	case CommandTxnPrepare:
		return applyPrepare(s, c.Txn)
	case CommandTxnDecide:
		return applyDecide(s, idx, c.Txn)
	case CommandTxnResolve:
		return applyResolve(s, idx, c.Txn)
	case CommandTxnResolved:
		return applyMarkResolved(s, c.Txn)
	case CommandTxnGC:
		return applyGC(s, c.Txn)
	case CommandLeaseGrant, CommandLeaseRevoke, CommandLeasePut:
		return applyLease(s, idx, c)
	}
	// Decode only returns known types; reaching here is a programming error.
	panic("fsm: applyCommand: unhandled " + c.Type.String())
}

func applyPut(s *state, idx uint64, c Command) *Result {
	// The path found by the lookup guides the insert, which then
	// compares little more than once per level.
	var path btree.PathHint
	cur, found := s.kv.GetHint(entry{key: c.Key}, &path)
	if !condHolds(c.Cond, cur, found) {
		return failed(cur, found)
	}
	e := entry{key: c.Key, value: bytes.Clone(c.Value), create: idx, mod: idx, version: 1}
	if e.value == nil {
		e.value = []byte{} // a stored key always has a non-nil value
	}
	if found {
		e.create, e.version = cur.create, cur.version+1
	}
	s.kv.SetHint(e, &path)
	s.recordPut(e)
	// The writer has the value: the result carries the key's revisions
	// only, so a put copies its value once, into the tree.
	return &Result{KV: KV{Key: e.key, CreateRevision: e.create, ModRevision: e.mod, Version: e.version}, Found: found}
}

func applyDelete(s *state, idx uint64, c Command) *Result {
	cur, found := s.kv.Get(entry{key: c.Key})
	if !condHolds(c.Cond, cur, found) {
		return failed(cur, found)
	}
	if !found {
		return &Result{}
	}
	s.kv.Delete(cur)
	s.recordDelete(idx, cur)
	return &Result{KV: cur.kv(), Found: true, Deleted: true}
}

// applyDeletePrefix deletes every key under prefix, or none if a
// transaction holds a lock on one of them.
func applyDeletePrefix(s *state, idx uint64, prefix string) *Result {
	var lockedBy string
	s.locks.Ascend(lockEntry{key: prefix}, func(l lockEntry) bool {
		if strings.HasPrefix(l.key, prefix) {
			lockedBy = l.txn
		}
		return false // the first lock at or after prefix decides
	})
	if lockedBy != "" {
		return &Result{Err: ErrLocked, LockedBy: lockedBy}
	}
	var doomed []entry
	s.kv.Ascend(entry{key: prefix}, func(e entry) bool {
		if !strings.HasPrefix(e.key, prefix) {
			return false
		}
		doomed = append(doomed, e)
		return true
	})
	for _, e := range doomed {
		s.kv.Delete(e)
		s.recordDelete(idx, e)
		s.detach(e.key)
	}
	return &Result{Deleted: len(doomed) > 0, Count: len(doomed)}
}

// condHolds reports whether a write guarded by c may proceed given the
// key's current state.
func condHolds(c Condition, cur entry, found bool) bool {
	switch c.Kind {
	case CondRevision:
		return found && cur.mod == c.Revision
	case CondAbsent:
		return !found
	}
	return true
}

func failed(cur entry, found bool) *Result {
	r := &Result{Found: found, Err: ErrPrecondition}
	if found {
		r.KV = cur.kv()
	}
	return r
}
