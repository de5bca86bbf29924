package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/hashicorp/raft"
	"github.com/raftkv/raftkv/snapshot"

	"github.com/raftkv/raftkv/internal/wire"
)

// Snapshot kinds. The kind doubles as the content version: Persist writes
// SnapshotKindV2; Restore reads both.
const (
	// SnapshotKind is the first content version: one untagged record per
	// key, nothing else.
	SnapshotKind = "kv"
	// SnapshotKindV2 adds transaction state. Every record starts with a tag
	// byte (see snapshot_txn.go): keys, then staged parts, records and
	// finished markers. Locks are not written; they are rebuilt from the
	// staged parts.
	SnapshotKindV2 = "kv.2"
)

// fsmSnapshot is a point-in-time view of the state: a copy-on-write clone
// of the trees, which later Apply calls never modify.
type fsmSnapshot struct {
	st  state
	hdr snapshot.Header
}

var _ raft.FSMSnapshot = (*fsmSnapshot)(nil)

// Snapshot captures the current state in O(1) by cloning the tree; the
// clone is streamed by Persist while Apply carries on with the original.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	// Copy writes to the tree's bookkeeping, so it needs the write lock
	// even though it does not change any key.
	f.mu.Lock()
	defer f.mu.Unlock()
	return &fsmSnapshot{
		st:  f.st.copy(),
		hdr: snapshot.Header{Kind: SnapshotKindV2, Group: f.group, Index: f.applied.Load(), Term: f.term},
	}, nil
}

// Persist streams the clone as one record per key, in key order, so equal
// states always produce identical bytes. On any error the sink is
// cancelled.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist %s snapshot at index %d: %w", s.hdr.Group, s.hdr.Index, err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(out io.Writer) error {
	w, err := snapshot.NewWriter(out, s.hdr)
	if err != nil {
		return err
	}
	if err := writeState(w, &s.st); err != nil {
		return err
	}
	return w.Close()
}

// Release is a no-op: the clone is reclaimed by the garbage collector.
func (s *fsmSnapshot) Release() {}

// Restore replaces the state with a checkpoint. The whole stream is read
// and verified into a new tree first; the live state is swapped only after
// the trailer checks out, so a damaged checkpoint leaves it untouched.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, hdr, err := f.load(rc)
	if err != nil {
		return fmt.Errorf("fsm: restore %s: %w", f.group, err)
	}
	f.mu.Lock()
	// The history starts afresh: the checkpoint holds no changes, so a
	// watch from before its index is told the history is compacted.
	st.hist = newHistory(f.limits, hdr.Index)
	f.st, f.term = st, hdr.Term
	f.mu.Unlock()
	f.applied.Set(hdr.Index)
	return nil
}

func (f *FSM) load(r io.Reader) (state, snapshot.Header, error) {
	sr, err := snapshot.NewReader(r)
	if err != nil {
		return state{}, snapshot.Header{}, err
	}
	hdr := sr.Header()
	if (hdr.Kind != SnapshotKind && hdr.Kind != SnapshotKindV2) || hdr.Group != f.group {
		return state{}, hdr, fmt.Errorf("%w: kind %q group %q, want %q or %q, %q",
			ErrBadSnapshot, hdr.Kind, hdr.Group, SnapshotKind, SnapshotKindV2, f.group)
	}
	st := newState(f.group)
	var ld loader
	for n := 0; ; n++ {
		p, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return st, hdr, ld.finish(&st)
		}
		if err != nil {
			return state{}, hdr, err
		}
		if hdr.Kind == SnapshotKind {
			err = ld.keyRecord(&st, p, n, hdr.Index)
		} else {
			err = ld.taggedRecord(&st, p, n, hdr.Index)
		}
		if err != nil {
			return state{}, hdr, fmt.Errorf("record %d: %w", n, err)
		}
	}
}

// Record layout: key length (uvarint), key, create, mod, version
// (uvarints), value length (uvarint), value.
func appendRecord(b []byte, e entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.key)))
	b = append(b, e.key...)
	b = binary.AppendUvarint(b, e.create)
	b = binary.AppendUvarint(b, e.mod)
	b = binary.AppendUvarint(b, e.version)
	b = binary.AppendUvarint(b, uint64(len(e.value)))
	return append(b, e.value...)
}

// decodeRecord parses a record. Key and value both alias p, which the
// snapshot reader allocated for this record alone and which nothing writes
// to afterwards (stored values are never modified, see entry). Copying the
// key out, as string() does, kept p alive for the value anyway and added an
// allocation of its own per key: aliasing it saves 16 bytes per key of a
// restored shard and a fifth of Restore's allocations (BenchmarkFSMMemory,
// BenchmarkRestore). The value slice's capacity ends where the value does,
// so no append to it can reach the key's bytes.
func decodeRecord(p []byte) (entry, error) {
	d := wire.NewDecoder(p)
	k := d.Bytes()
	e := entry{key: unsafe.String(unsafe.SliceData(k), len(k))}
	e.create = d.Uvarint()
	e.mod = d.Uvarint()
	e.version = d.Uvarint()
	e.value = d.Bytes()
	if err := d.Finish(); err != nil {
		return entry{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return e, nil
}

// checkRecord rejects records that no sequence of commands could produce.
// Each write of a key uses its own log index in [create, mod], so version
// cannot exceed mod-create+1.
func checkRecord(e entry, prev string, n int, index uint64) error {
	switch {
	case n > 0 && e.key <= prev:
		return fmt.Errorf("%w: key %q not after %q", ErrBadSnapshot, e.key, prev)
	case e.create == 0 || e.create > e.mod || e.mod > index:
		return fmt.Errorf("%w: key %q revisions create=%d mod=%d at index %d",
			ErrBadSnapshot, e.key, e.create, e.mod, index)
	case e.version == 0 || e.version > e.mod-e.create+1:
		return fmt.Errorf("%w: key %q version %d for revisions %d..%d",
			ErrBadSnapshot, e.key, e.version, e.create, e.mod)
	}
	return nil
}
