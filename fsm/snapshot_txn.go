package fsm

import (
	"encoding/binary"
	"fmt"

	"github.com/raftkv/raftkv/snapshot"

	"github.com/raftkv/raftkv/internal/wire"
)

// Record tags of a SnapshotKindV2 checkpoint, written in this order; within
// a tag, records are in key or id order.
const (
	tagKey    = 1 // tag, then the v1 key record
	tagStaged = 2 // tag, id, primary, participants, prepared-at, body (as in a log entry)
	tagRecord = 3 // tag, id, state, succeeded, participants, started-at, decided-at, resolved
	tagDone   = 4 // tag, id, at
	// tagIdempotency: tag, key, hash, at, index, term, kind, outcome
	// (idempotency.go). A number apart from 1..4 so that other sections
	// can take the numbers between; a build from before it refuses the
	// checkpoint (unknown tag) rather than drop the table.
	tagIdempotency = 20
	// tagLease and tagAttached: the lease records and this shard's keys
	// attached to them (lease.go).
	tagLease    = 16
	tagAttached = 17
)

// knownTag reports whether this build reads records of tag.
func knownTag(tag byte) bool {
	return (tag >= tagKey && tag <= tagDone) || tag == tagLease || tag == tagAttached || tag == tagIdempotency
}

// writeState writes every part of st as tagged records.
func writeState(w *snapshot.Writer, st *state) error {
	var buf []byte
	var err error
	put := func(b []byte) bool {
		buf = b
		err = w.WriteRecord(buf)
		return err == nil
	}
	st.kv.Scan(func(e entry) bool { return put(appendRecord(append(buf[:0], tagKey), e)) })
	if err == nil {
		st.staged.Scan(func(s Staged) bool { return put(appendStaged(append(buf[:0], tagStaged), s)) })
	}
	if err == nil {
		st.records.Scan(func(r Record) bool { return put(appendTxnRecord(append(buf[:0], tagRecord), r)) })
	}
	if err == nil {
		st.done.Scan(func(d doneEntry) bool {
			b := appendString(append(buf[:0], tagDone), d.id)
			return put(binary.AppendUvarint(b, uint64(max(d.at, 0))))
		})
	}
	if err == nil {
		st.leases.Scan(func(l leaseEntry) bool { return put(appendLeaseRecord(append(buf[:0], tagLease), l)) })
	}
	if err == nil {
		st.attached.Scan(func(a attachEntry) bool {
			return put(appendString(appendString(append(buf[:0], tagAttached), a.key), a.lease))
		})
	}
	if err == nil {
		st.idem.Scan(func(e idemEntry) bool { return put(appendIdemRecord(append(buf[:0], tagIdempotency), e)) })
	}
	return err
}

func appendStaged(b []byte, s Staged) []byte {
	b = appendString(b, s.ID)
	b = appendString(b, s.Primary)
	b = appendStrings(b, s.Participants)
	b = binary.AppendUvarint(b, uint64(max(s.PreparedAt, 0)))
	return appendTxnBody(b, &s.Part)
}

func appendTxnRecord(b []byte, r Record) []byte {
	b = appendString(b, r.ID)
	b = append(b, byte(r.State), boolByte(r.Succeeded))
	b = appendStrings(b, r.Participants)
	b = binary.AppendUvarint(b, uint64(max(r.StartedAt, 0)))
	b = binary.AppendUvarint(b, uint64(max(r.DecidedAt, 0)))
	return append(b, boolByte(r.Resolved))
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func readStrings(d *wire.Decoder) []string {
	n := d.Count(1)
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = string(d.Bytes())
	}
	return out
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// loader rebuilds a state from checkpoint records and checks their order.
type loader struct {
	tag     byte
	prevKey string
	prevID  string
	keys    int
}

// keyRecord loads one record of a version-1 checkpoint.
func (ld *loader) keyRecord(st *state, p []byte, n int, index uint64) error {
	e, err := decodeRecord(p)
	if err == nil {
		err = checkRecord(e, ld.prevKey, ld.keys, index)
	}
	if err != nil {
		return err
	}
	ld.prevKey = e.key
	ld.keys++
	st.kv.Load(e) // keys arrive sorted, so Load appends cheaply
	return nil
}

// taggedRecord loads one record of a version-2 checkpoint.
func (ld *loader) taggedRecord(st *state, p []byte, n int, index uint64) error {
	if len(p) == 0 {
		return fmt.Errorf("%w: empty record", ErrMalformed)
	}
	tag := p[0]
	if tag < ld.tag || !knownTag(tag) {
		return fmt.Errorf("%w: record tag %d after %d", ErrBadSnapshot, tag, ld.tag)
	}
	if tag != ld.tag {
		ld.tag, ld.prevID = tag, ""
	}
	if tag == tagKey {
		return ld.keyRecord(st, p[1:], n, index)
	}
	d := wire.NewDecoder(p[1:])
	id := string(d.Bytes())
	switch tag {
	case tagStaged:
		s := Staged{ID: id, Primary: string(d.Bytes()), Participants: readStrings(d), PreparedAt: readInt64(d)}
		decodeTxnBody(d, &s.Part)
		if err := d.Finish(); err != nil {
			return fmt.Errorf("%w: staged %q: %v", ErrMalformed, id, err)
		}
		if err := validTxn(&s.Part); err != nil {
			return fmt.Errorf("%w: staged %q: %v", ErrBadSnapshot, id, err)
		}
		st.staged.Load(s.clone()) // detach from the reader's buffer
	case tagRecord:
		r := Record{ID: id, State: TxnState(d.Byte()), Succeeded: d.Byte() == 1, Participants: readStrings(d),
			StartedAt: readInt64(d), DecidedAt: readInt64(d), Resolved: d.Byte() == 1}
		if err := d.Finish(); err != nil {
			return fmt.Errorf("%w: record %q: %v", ErrMalformed, id, err)
		}
		if r.State < StatePending || r.State > StateAborted {
			return fmt.Errorf("%w: record %q state %d", ErrBadSnapshot, id, r.State)
		}
		st.records.Load(r)
	case tagDone:
		at := readInt64(d)
		if err := d.Finish(); err != nil {
			return fmt.Errorf("%w: finished %q: %v", ErrMalformed, id, err)
		}
		st.done.Load(doneEntry{id: id, at: at})
	case tagIdempotency:
		if err := loadIdemRecord(st, id, d, index); err != nil {
			return err
		}
	case tagLease:
		if err := loadLeaseRecord(st, id, d); err != nil {
			return err
		}
	case tagAttached:
		if err := loadAttachRecord(st, id, d); err != nil {
			return err
		}
	}
	if id == "" || (ld.prevID != "" && id <= ld.prevID) {
		return fmt.Errorf("%w: transaction id %q not after %q", ErrBadSnapshot, id, ld.prevID)
	}
	ld.prevID = id
	return nil
}

// finish rebuilds the lock table from the staged parts; two parts locking
// the same key cannot come from any log.
func (ld *loader) finish(st *state) error {
	var err error
	st.staged.Scan(func(s Staged) bool {
		for _, k := range s.Part.Keys() {
			if other, ok := st.lock(k); ok {
				err = fmt.Errorf("%w: key %q locked by both %q and %q", ErrBadSnapshot, k, other, s.ID)
				return false
			}
			st.locks.Set(lockEntry{key: k, txn: s.ID})
		}
		return true
	})
	if err != nil {
		return err
	}
	return lockLeaseKeys(st)
}
