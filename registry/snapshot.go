package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"github.com/raftkv/raftkv/snapshot"

	"github.com/raftkv/raftkv/internal/wire"
)

// SnapshotKind is the snapshot.Header kind of a registry checkpoint.
const SnapshotKind = "registry"

// Record tags. A checkpoint holds exactly one settings record, first,
// then one node record per node in ID order, then one record per role and
// per token, each in name/id order (checkpoints written before auth existed
// simply have none).
const (
	recSettings = 1
	recNode     = 2
	recRole     = 3
	recToken    = 4
)

// regSnapshot is a copy of the state taken by Snapshot. The registry is
// small (one entry per node), so a plain copy is cheap enough.
type regSnapshot struct {
	hdr       snapshot.Header
	clusterID string
	shards    int
	nodes     []Node  // sorted by ID
	roles     []Role  // sorted by name
	tokens    []Token // sorted by id
}

var _ raft.FSMSnapshot = (*regSnapshot)(nil)

// Snapshot copies the current state.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &regSnapshot{
		hdr:       snapshot.Header{Kind: SnapshotKind, Group: f.group, Index: f.applied.Load(), Term: f.term},
		clusterID: f.st.clusterID,
		shards:    f.st.shards,
		nodes:     f.st.sortedNodes(),
		roles:     f.st.auth.sortedRoles(),
		tokens:    f.st.auth.sortedTokens(),
	}, nil
}

// Persist writes the checkpoint; on error the sink is cancelled.
func (s *regSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("registry: persist snapshot at index %d: %w", s.hdr.Index, err)
	}
	return sink.Close()
}

func (s *regSnapshot) write(out io.Writer) error {
	w, err := snapshot.NewWriter(out, s.hdr)
	if err != nil {
		return err
	}
	rec := appendString([]byte{recSettings}, s.clusterID)
	rec = binary.AppendUvarint(rec, uint64(s.shards))
	if err := w.WriteRecord(rec); err != nil {
		return err
	}
	for _, n := range s.nodes {
		rec = appendString(rec[:0], n.ID)
		rec = appendString(rec, n.HTTPAddr)
		rec = appendString(rec, n.RaftAddr)
		if n.Incarnation != "" {
			// Written only when set, so a checkpoint without incarnations
			// stays readable by an older raftkv.
			rec = appendString(rec, n.Incarnation)
		}
		if err := w.WriteRecord(append([]byte{recNode}, rec...)); err != nil {
			return err
		}
	}
	for _, r := range s.roles {
		if err := w.WriteRecord(appendRole([]byte{recRole}, r)); err != nil {
			return err
		}
	}
	for _, t := range s.tokens {
		if err := w.WriteRecord(appendToken([]byte{recToken}, t)); err != nil {
			return err
		}
	}
	return w.Close()
}

// Release is a no-op.
func (s *regSnapshot) Release() {}

// Restore replaces the state with a checkpoint, which is verified in full
// (including its trailer) before the live state is touched.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, hdr, err := f.load(rc)
	if err != nil {
		return fmt.Errorf("registry: restore %s: %w", f.group, err)
	}
	f.mu.Lock()
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
	if hdr.Kind != SnapshotKind || hdr.Group != f.group {
		return state{}, hdr, fmt.Errorf("%w: kind %q group %q, want %q %q",
			ErrBadSnapshot, hdr.Kind, hdr.Group, SnapshotKind, f.group)
	}
	st := state{nodes: map[string]Node{}, auth: newAuthState()}
	var prev string
	for n := 0; ; n++ {
		p, err := sr.Next()
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return state{}, hdr, fmt.Errorf("%w: no settings record", ErrBadSnapshot)
			}
			return st, hdr, nil
		}
		if err != nil {
			return state{}, hdr, err
		}
		switch {
		case n == 0:
			err = st.loadSettings(p)
		case len(p) > 0 && (p[0] == recRole || p[0] == recToken):
			err = st.auth.load(p)
		default:
			prev, err = st.loadNode(p, prev)
		}
		if err != nil {
			return state{}, hdr, fmt.Errorf("record %d: %w", n, err)
		}
	}
}

func (s *state) loadSettings(p []byte) error {
	if len(p) == 0 || p[0] != recSettings {
		return fmt.Errorf("%w: first record is not the settings", ErrBadSnapshot)
	}
	d := wire.NewDecoder(p[1:])
	s.clusterID = d.Text()
	shards := d.Uvarint()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("%w: settings: %v", ErrMalformed, err)
	}
	// Either both settings are set (Init applied) or neither is.
	if shards > MaxShards || (s.clusterID == "") != (shards == 0) {
		return fmt.Errorf("%w: cluster %q with %d shards", ErrBadSnapshot, s.clusterID, shards)
	}
	s.shards = int(shards)
	return nil
}

func (s *state) loadNode(p []byte, prev string) (string, error) {
	if len(p) == 0 || p[0] != recNode {
		return "", fmt.Errorf("%w: expected a node record", ErrBadSnapshot)
	}
	d := wire.NewDecoder(p[1:])
	n := Node{ID: d.Text(), HTTPAddr: d.Text(), RaftAddr: d.Text()}
	if d.Len() > 0 {
		if n.Incarnation = d.Text(); n.Incarnation == "" && d.Err() == nil {
			d.Fail("empty incarnation")
		}
	}
	if err := d.Finish(); err != nil {
		return "", fmt.Errorf("%w: node: %v", ErrMalformed, err)
	}
	if n.ID == "" || n.ID <= prev {
		return "", fmt.Errorf("%w: node id %q not after %q", ErrBadSnapshot, n.ID, prev)
	}
	s.nodes[n.ID] = n
	return n.ID, nil
}
