package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/btree"

	"github.com/raftkv/raftkv/internal/wire"
)

// Leases (etcd-style). Every shard holds the record of every lease (the
// cluster grants and revokes on all of them); a key is attached to a lease
// on its own shard. The state machine never reads a clock: whether a lease
// has expired is the cluster's decision (the lease's home-shard leader's),
// written into the log as a revoke. What Apply enforces:
//
//   - A put with a lease (CommandLeasePut) writes only if this shard holds
//     the lease and it is not being revoked; otherwise ErrLeaseNotFound and
//     nothing is written. Any other write of the key (put, delete, a
//     transaction's put or delete, a prefix delete) detaches it.
//   - Revoke is two-phase on each shard. Prepare marks the lease revoking,
//     refuses further attachments and locks its keys here (lock id
//     LeaseLockPrefix+id) so that no write can change them; a key locked by
//     a transaction makes the prepare fail with ErrLocked (the cluster
//     settles the transaction and tries again). Commit deletes the keys,
//     releases the locks and drops the record. Both are idempotent, and
//     both on an unknown lease change nothing.
//   - A prepare carries the term its proposer decided it in and applies
//     only in an entry of that term (ErrLeaseFenced otherwise), so a
//     decision made under one leadership never lands under a later one.

// Lease errors. Match them with errors.Is.
var (
	// ErrLeaseNotFound is Result.Err for a put naming a lease this shard
	// does not hold, or one being revoked. Nothing was written.
	ErrLeaseNotFound = errors.New("fsm: lease not found or expired")
	// ErrLeaseFenced is Result.Err for a revoke prepare applied in another
	// term than the one it was decided in. Nothing changed.
	ErrLeaseFenced = errors.New("fsm: lease revoke decided in an earlier term")
)

// LeaseLockPrefix starts the lock id (FSM.Lock, Result.LockedBy) of a key
// locked by the revocation of a lease: LeaseLockPrefix + lease id.
// Transaction ids never contain ':'.
const LeaseLockPrefix = "lease:"

// MaxLeaseIDBytes bounds a lease id.
const MaxLeaseIDBytes = 128

// LeaseOfLock returns the lease id of a lease lock id.
func LeaseOfLock(lockID string) (string, bool) {
	return strings.CutPrefix(lockID, LeaseLockPrefix)
}

// Lease revoke phases. Values are persisted in the raft log.
const (
	LeasePrepare byte = 1
	LeaseCommit  byte = 2
)

// LeaseCmd is the lease part of a command: CommandLeaseGrant (ID, TTL),
// CommandLeaseRevoke (ID, Phase, Term) and CommandLeasePut (ID; the key,
// value and condition are the Command's).
type LeaseCmd struct {
	ID    string
	TTL   int64 // nanoseconds; grant only
	Phase byte  // revoke only
	Term  uint64
}

// LeaseInfo describes a lease as this shard holds it.
type LeaseInfo struct {
	ID       string
	TTL      int64 // nanoseconds
	Revoking bool
	// Keys are this shard's keys attached to the lease, in order (filled
	// by Lease only).
	Keys []string
	// KeyCount is how many of this shard's keys are attached.
	KeyCount int
}

type leaseEntry struct {
	id       string
	ttl      int64
	revoking bool
}

// attachEntry attaches key to lease. The state keeps two trees of them:
// by key (which lease a key has) and by lease then key (a lease's keys).
type attachEntry struct {
	key   string
	lease string
}

func newLeaseTrees() (*btree.BTreeG[leaseEntry], *btree.BTreeG[attachEntry], *btree.BTreeG[attachEntry]) {
	opts := btree.Options{NoLocks: true}
	return btree.NewBTreeGOptions(func(a, b leaseEntry) bool { return a.id < b.id }, opts),
		btree.NewBTreeGOptions(func(a, b attachEntry) bool { return a.key < b.key }, opts),
		btree.NewBTreeGOptions(func(a, b attachEntry) bool {
			if a.lease != b.lease {
				return a.lease < b.lease
			}
			return a.key < b.key
		}, opts)
}

// EncodeLeaseGrant returns the entry that creates lease id with ttl.
func EncodeLeaseGrant(id string, ttlNanos int64) []byte {
	b := []byte{CommandVersion, byte(CommandLeaseGrant)}
	b = appendString(b, id)
	return binary.AppendUvarint(b, uint64(max(ttlNanos, 0)))
}

// EncodeLeaseRevoke returns the entry for one phase of a revoke. term is
// the term the proposer decided the revoke in (prepare only; 0 for commit).
func EncodeLeaseRevoke(id string, phase byte, term uint64) []byte {
	b := []byte{CommandVersion, byte(CommandLeaseRevoke)}
	b = appendString(b, id)
	b = append(b, phase)
	return binary.AppendUvarint(b, term)
}

// EncodeLeasePut returns the entry for a put that attaches key to lease.
// It panics on an undefined cond.Kind, like EncodePut.
func EncodeLeasePut(key string, value []byte, cond Condition, lease string) []byte {
	b := make([]byte, 0, 2+1+binary.MaxVarintLen64*4+len(key)+len(value)+len(lease))
	b = appendHead(b, CommandLeasePut, key, cond)
	b = appendBytes(b, value)
	return appendString(b, lease)
}

func (t CommandType) isLease() bool { return t >= CommandLeaseGrant && t <= CommandLeasePut }

// decodeLease parses the payload of a lease command into c.
func decodeLease(c *Command, d *wire.Decoder) error {
	lc := &LeaseCmd{}
	switch c.Type {
	case CommandLeaseGrant:
		lc.ID = string(d.Bytes())
		lc.TTL = readInt64(d)
	case CommandLeaseRevoke:
		lc.ID = string(d.Bytes())
		lc.Phase = d.Byte()
		lc.Term = d.Uvarint()
	case CommandLeasePut:
		c.Cond.Kind = CondKind(d.Byte())
		c.Cond.Revision = d.Uvarint()
		c.Key = string(d.Bytes())
		c.Value = d.Bytes()
		lc.ID = string(d.Bytes())
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("%w: %v: %v", ErrMalformed, c.Type, err)
	}
	switch {
	case !c.Cond.Kind.valid():
		return fmt.Errorf("%w: condition kind %d", ErrMalformed, c.Cond.Kind)
	case c.Type == CommandLeaseRevoke && lc.Phase != LeasePrepare && lc.Phase != LeaseCommit:
		return fmt.Errorf("%w: lease revoke phase %d", ErrMalformed, lc.Phase)
	}
	c.Lease = lc
	return nil
}

// checkLease holds the rules between a lease command's fields.
func checkLease(c Command) error {
	lc := c.Lease
	switch {
	case lc.ID == "" || len(lc.ID) > MaxLeaseIDBytes:
		return fmt.Errorf("lease id of %d bytes, want 1..%d", len(lc.ID), MaxLeaseIDBytes)
	case c.Type == CommandLeaseGrant && lc.TTL <= 0:
		return errors.New("lease without a time to live")
	case c.Type == CommandLeaseRevoke && lc.Phase == LeasePrepare && lc.Term == 0:
		return errors.New("lease revoke prepare without a term")
	case c.Type == CommandLeasePut && c.Key == "":
		return errors.New("empty key")
	}
	return nil
}

// fenced reports whether c is a revoke prepare decided in another term
// than entryTerm, the term of the entry that carries it.
func fenced(c Command, entryTerm uint64) bool {
	return c.Type == CommandLeaseRevoke && c.Lease.Phase == LeasePrepare && c.Lease.Term != entryTerm
}

func applyLease(s *state, idx uint64, c Command) *Result {
	switch c.Type {
	case CommandLeaseGrant:
		return applyLeaseGrant(s, c.Lease)
	case CommandLeaseRevoke:
		if c.Lease.Phase == LeasePrepare {
			return applyLeasePrepare(s, c.Lease.ID)
		}
		return applyLeaseCommit(s, idx, c.Lease.ID)
	}
	return applyLeasePut(s, idx, c)
}

func applyLeaseGrant(s *state, lc *LeaseCmd) *Result {
	if _, ok := s.leases.Get(leaseEntry{id: lc.ID}); ok {
		return &Result{Found: true} // a retried grant: the first one stands
	}
	s.leases.Set(leaseEntry{id: lc.ID, ttl: lc.TTL})
	return &Result{}
}

func applyLeasePrepare(s *state, id string) *Result {
	l, ok := s.leases.Get(leaseEntry{id: id})
	if !ok {
		return &Result{}
	}
	if l.revoking {
		return &Result{Found: true, Count: s.leaseKeyCount(id)}
	}
	keys := s.leaseKeys(id)
	for _, k := range keys {
		if r := lockedResult(s, k); r != nil {
			return r
		}
	}
	l.revoking = true
	s.leases.Set(l)
	for _, k := range keys {
		s.locks.Set(lockEntry{key: k, txn: LeaseLockPrefix + id})
	}
	return &Result{Found: true, Count: len(keys)}
}

func applyLeaseCommit(s *state, idx uint64, id string) *Result {
	l, ok := s.leases.Get(leaseEntry{id: id})
	if !ok {
		return &Result{}
	}
	keys := s.leaseKeys(id)
	lockID := LeaseLockPrefix + id
	if !l.revoking {
		// A commit with no prepare before it here (a shard that missed
		// the prepare cannot exist, but the rule costs nothing): never
		// delete a key under a transaction's lock.
		for _, k := range keys {
			if r := lockedResult(s, k); r != nil {
				return r
			}
		}
	}
	for _, k := range keys {
		// Through recordDelete, so watches see an expiry's deletes.
		if cur, found := s.kv.Delete(entry{key: k}); found {
			s.recordDelete(idx, cur)
		}
		s.attached.Delete(attachEntry{key: k})
		s.byLease.Delete(attachEntry{key: k, lease: id})
		if lk, ok := s.locks.Get(lockEntry{key: k}); ok && lk.txn == lockID {
			s.locks.Delete(lk)
		}
	}
	s.leases.Delete(l)
	return &Result{Found: true, Deleted: len(keys) > 0, Count: len(keys)}
}

func applyLeasePut(s *state, idx uint64, c Command) *Result {
	if r := lockedResult(s, c.Key); r != nil {
		return r
	}
	l, ok := s.leases.Get(leaseEntry{id: c.Lease.ID})
	if !ok || l.revoking {
		return &Result{Err: fmt.Errorf("%w: %q", ErrLeaseNotFound, c.Lease.ID)}
	}
	r := applyPut(s, idx, c)
	if r.Err != nil {
		return r
	}
	s.detach(c.Key)
	a := attachEntry{key: c.Key, lease: l.id}
	s.attached.Set(a)
	s.byLease.Set(a)
	return r
}

// detach removes key's attachment, if it has one. Every write of a key
// other than a put with a lease calls it.
func (s *state) detach(key string) {
	if s.attached.Len() == 0 {
		return
	}
	if a, ok := s.attached.Get(attachEntry{key: key}); ok {
		s.attached.Delete(a)
		s.byLease.Delete(a)
	}
}

// detachOps detaches every key a transaction branch writes.
func (s *state) detachOps(ops []Op) {
	for _, o := range ops {
		if o.Kind == OpPut || o.Kind == OpDelete {
			s.detach(o.Key)
		}
	}
}

func (s *state) leaseKeys(id string) []string {
	var keys []string
	s.byLease.Ascend(attachEntry{lease: id}, func(a attachEntry) bool {
		if a.lease != id {
			return false
		}
		keys = append(keys, a.key)
		return true
	})
	return keys
}

func (s *state) leaseKeyCount(id string) int {
	n := 0
	s.byLease.Ascend(attachEntry{lease: id}, func(a attachEntry) bool {
		if a.lease != id {
			return false
		}
		n++
		return true
	})
	return n
}

// Lease returns the lease as this shard holds it, with its keys here.
func (f *FSM) Lease(id string) (LeaseInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	l, ok := f.st.leases.Get(leaseEntry{id: id})
	if !ok {
		return LeaseInfo{}, false
	}
	keys := f.st.leaseKeys(id)
	return LeaseInfo{ID: l.id, TTL: l.ttl, Revoking: l.revoking, Keys: keys, KeyCount: len(keys)}, true
}

// LeaseRecord returns the lease as this shard holds it, without its keys
// (cheap: no walk over them).
func (f *FSM) LeaseRecord(id string) (LeaseInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	l, ok := f.st.leases.Get(leaseEntry{id: id})
	return LeaseInfo{ID: l.id, TTL: l.ttl, Revoking: l.revoking}, ok
}

// Leases lists the leases this shard holds whose id starts with prefix
// (a home shard's name and '.' selects the leases homed there), in id
// order, without their keys; with counts, KeyCount is filled in (which
// walks every attached key).
func (f *FSM) Leases(prefix string, counts bool) []LeaseInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []LeaseInfo
	f.st.leases.Ascend(leaseEntry{id: prefix}, func(l leaseEntry) bool {
		if !strings.HasPrefix(l.id, prefix) {
			return false
		}
		info := LeaseInfo{ID: l.id, TTL: l.ttl, Revoking: l.revoking}
		if counts {
			info.KeyCount = f.st.leaseKeyCount(l.id)
		}
		out = append(out, info)
		return true
	})
	return out
}

// LeaseOf returns the lease key is attached to, if any.
func (f *FSM) LeaseOf(key string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a, ok := f.st.attached.Get(attachEntry{key: key})
	return a.lease, ok
}

// Checkpoint records (tags 16 and 17, after the transaction tags):
//
//	tagLease     tag, id, ttl (uvarint ns), revoking (1 byte)
//	tagAttached  tag, key, lease id (key order)
func appendLeaseRecord(b []byte, l leaseEntry) []byte {
	b = appendString(b, l.id)
	b = binary.AppendUvarint(b, uint64(max(l.ttl, 0)))
	return append(b, boolByte(l.revoking))
}

func loadLeaseRecord(st *state, id string, d *wire.Decoder) error {
	l := leaseEntry{id: id, ttl: readInt64(d)}
	rev := d.Byte()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("%w: lease %q: %v", ErrMalformed, id, err)
	}
	if rev > 1 || l.ttl <= 0 || len(id) > MaxLeaseIDBytes {
		return fmt.Errorf("%w: lease %q ttl %d revoking %d", ErrBadSnapshot, id, l.ttl, rev)
	}
	l.revoking = rev == 1
	st.leases.Load(l)
	return nil
}

func loadAttachRecord(st *state, key string, d *wire.Decoder) error {
	lease := string(d.Bytes())
	if err := d.Finish(); err != nil {
		return fmt.Errorf("%w: attachment of %q: %v", ErrMalformed, key, err)
	}
	if _, ok := st.leases.Get(leaseEntry{id: lease}); !ok {
		return fmt.Errorf("%w: key %q attached to unknown lease %q", ErrBadSnapshot, key, lease)
	}
	if _, ok := st.kv.Get(entry{key: key}); !ok {
		return fmt.Errorf("%w: lease %q attaches missing key %q", ErrBadSnapshot, lease, key)
	}
	a := attachEntry{key: key, lease: lease}
	st.attached.Load(a)
	st.byLease.Set(a)
	return nil
}

// lockLeaseKeys rebuilds the locks of revoking leases (Restore).
func lockLeaseKeys(st *state) error {
	var err error
	st.leases.Scan(func(l leaseEntry) bool {
		if !l.revoking {
			return true
		}
		for _, k := range st.leaseKeys(l.id) {
			if other, ok := st.lock(k); ok {
				err = fmt.Errorf("%w: key %q locked by both %q and lease %q", ErrBadSnapshot, k, other, l.id)
				return false
			}
			st.locks.Set(lockEntry{key: k, txn: LeaseLockPrefix + l.id})
		}
		return true
	})
	return err
}
