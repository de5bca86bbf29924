// Package logstore is a node's one durable raft log: the entries and the
// stable state (term, vote) of every raft group on the node, in a single
// write-ahead log. Appends that groups make at the same time are written
// together and made durable with one fdatasync (group commit), instead of
// one per group.
//
// The log is a directory of segment files written strictly by appending.
// An index in memory says where each group's entries lie; reads are
// positioned reads of the segments (raft's LogCache sits in front). Old
// segments are deleted once nothing in them is needed, after the few live
// entries they still hold are copied forward.
//
// Each group gets a Store, which implements raft.LogStore and
// raft.StableStore. Close the DB only after every raft using one of its
// Stores has shut down.
package logstore

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/histo"
)

// ErrLocked is returned by Open when another DB, in this process or
// another, has the directory open (it holds an exclusive lock on the file
// LOCK there): two writers would interleave their segments.
var ErrLocked = errors.New("the log is in use by another process (is a raftkv node running on this data dir?)")

// lockName is the file in the log's directory that an open DB locks.
const lockName = "LOCK"

// ErrClosed is returned by a Store whose DB was closed.
var ErrClosed = errors.New("logstore: closed")

// ErrCorrupt reports stored bytes that do not decode.
var ErrCorrupt = errors.New("logstore: corrupt log")

// ErrKeyNotFound is Get's answer for a key never set. raft treats an error
// reading "not found" as "no value yet".
var ErrKeyNotFound = errors.New("not found")

// maxBatch bounds how many requests one write carries, so one write never
// grows without limit under a flood.
const maxBatch = 256

// Options tune the segments; the zero value means the defaults.
type Options struct {
	// SegmentSize is the size a segment is preallocated to; a write that
	// would pass it goes to a new segment. Default 64 MiB.
	SegmentSize int64
	// MaxSegments is how many segments may pile up before the live entries
	// of the oldest are copied forward so it can be deleted. Default 4.
	MaxSegments int
	// Hold and HoldAfter are the committer's window under load: after a
	// write that carried at least HoldAfter requests (several groups
	// appending at once), the next write gathers requests until Hold has
	// passed since that write ended, so that more of them share one
	// fdatasync. A write after a smaller one, as a lone writer's always
	// is, waits for nothing. Defaults 250 µs and 3; a negative Hold turns
	// the window off. DESIGN.md, "Group commit", has the measurements.
	Hold      time.Duration
	HoldAfter int
}

func (o Options) withDefaults() Options {
	if o.SegmentSize <= 0 {
		o.SegmentSize = 64 << 20
	}
	if o.MaxSegments < 2 {
		o.MaxSegments = 4
	}
	if o.Hold == 0 {
		o.Hold = DefaultHold
	}
	if o.HoldAfter < 1 {
		o.HoldAfter = 3
	}
	return o
}

// DefaultHold is the committer's window when Options.Hold is zero: about
// two syncs' time on the machines measured (DESIGN.md, "Group commit").
const DefaultHold = 250 * time.Microsecond

// holdFor is how long the committer gathers requests for its next write,
// given how many requests the last one carried and how long ago it ended:
// a busy log (the last write was large) waits out the rest of the window.
func (o Options) holdFor(lastBatch int, sinceLast time.Duration) time.Duration {
	if o.Hold <= 0 || lastBatch < o.HoldAfter || sinceLast >= o.Hold {
		return 0
	}
	return o.Hold - sinceLast
}

// DB is the shared log. It owns one goroutine, the committer, which writes
// every request waiting at a moment with one write and one fdatasync.
type DB struct {
	dir  string
	opts Options
	reqs chan *request
	lock *os.File // holds the directory's lock (lockDir) while open

	// mu guards the in-memory state below. The committer alone changes it,
	// under the write lock, once a write is durable; readers look up an
	// entry and read its bytes under the read lock, so a segment is never
	// closed under a read.
	mu     sync.RWMutex
	groups map[string]*groupState
	byID   map[uint64]*groupState
	nextID uint64
	segs   []*segment       // oldest first, consecutive sequence numbers; the last is the head
	live   map[uint64]int64 // segment sequence number -> bytes of indexed entries in it
	failed error            // a write or sync failed: nothing more is written

	groupMu sync.Mutex // serialises group creation

	commits, batched atomic.Uint64   // writes the committer made, requests they carried
	syncs            histo.Histogram // each commit's fdatasync

	closeMu sync.RWMutex // closed, and the right to send on reqs
	closed  bool
	isShut  atomic.Bool   // closed, for readers that do not take closeMu
	done    chan struct{} // closed when the committer has stopped
}

// groupState is one group's index and stable values.
type groupState struct {
	id     uint64
	name   string
	idx    index
	stable map[string][]byte
}

// request is one record waiting to be made durable. apply, when set, runs
// under the write lock once it is, with the record's segment and offset.
type request struct {
	rec   []byte
	apply func(seg uint64, base int64)
	err   chan error
}

// Open opens (or creates) the log in directory dir with default options.
func Open(dir string) (*DB, error) { return OpenOptions(dir, Options{}) }

// OpenOptions opens (or creates) the log in directory dir, replaying its
// segments to rebuild the index, and starts the committer.
func OpenOptions(dir string, opts Options) (*DB, error) {
	d := &DB{
		dir:    dir,
		opts:   opts.withDefaults(),
		reqs:   make(chan *request, maxBatch),
		groups: map[string]*groupState{},
		byID:   map[uint64]*groupState{},
		nextID: 1,
		live:   map[uint64]int64{},
		done:   make(chan struct{}),
	}
	if err := d.load(); err != nil {
		d.closeFiles()
		return nil, fmt.Errorf("logstore: open %s: %w", dir, err)
	}
	go d.commitLoop()
	return d, nil
}

// Close stops the committer and closes the files. Calls made afterwards
// fail with ErrClosed.
func (d *DB) Close() error {
	d.closeMu.Lock()
	if d.closed {
		d.closeMu.Unlock()
		return nil
	}
	d.closed = true
	d.isShut.Store(true)
	close(d.reqs)
	d.closeMu.Unlock()
	<-d.done
	return d.closeFiles()
}

// Stats are the log's counters since it was opened.
type Stats struct {
	// Writes is how many writes (each one fdatasync) the committer made;
	// Requests how many appends, deletes and stable values they carried.
	// Requests/Writes is what group commit saved.
	Writes   uint64 `json:"writes"`
	Requests uint64 `json:"requests"`
	// SyncSeconds is the time spent waiting for fdatasync, and
	// SyncLatency how long each of the committer's took.
	SyncSeconds float64        `json:"sync_seconds"`
	SyncLatency histo.Snapshot `json:"-"`
	// Segments is how many segment files the log has now.
	Segments int `json:"segments"`
}

// Stats reports the log's counters.
func (d *DB) Stats() Stats {
	syncs := d.syncs.Snapshot()
	return Stats{
		Writes:      d.commits.Load(),
		Requests:    d.batched.Load(),
		SyncSeconds: syncs.Sum,
		SyncLatency: syncs,
		Segments:    d.Segments(),
	}
}

// Segments reports how many segment files the log has now.
func (d *DB) Segments() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.segs)
}

// submit queues a record and waits until it is durable (or failed).
func (d *DB) submit(rec []byte, apply func(seg uint64, base int64)) error {
	r := &request{rec: rec, apply: apply, err: make(chan error, 1)}
	d.closeMu.RLock()
	if d.closed {
		d.closeMu.RUnlock()
		return ErrClosed
	}
	d.reqs <- r
	d.closeMu.RUnlock()
	return <-r.err
}

// Group returns the store of the named group, declaring it first if the
// log has not seen it.
func (d *DB) Group(name string) (*Store, error) {
	if name == "" {
		return nil, errors.New("logstore: empty group name")
	}
	d.groupMu.Lock()
	defer d.groupMu.Unlock()
	d.mu.RLock()
	g, id := d.groups[name], d.nextID
	d.mu.RUnlock()
	if g == nil {
		r := newRecord(recGroup, id, len(name)+2)
		r.bytes([]byte(name))
		err := d.submit(r.finish(), func(uint64, int64) { d.addGroup(id, name) })
		if err != nil {
			return nil, fmt.Errorf("logstore: group %s: %w", name, err)
		}
		d.mu.RLock()
		g = d.groups[name]
		d.mu.RUnlock()
	}
	return &Store{d: d, g: g}, nil
}

// DropGroup deletes a group's entries and stable state (a migration that
// starts over does this first). Stores of the group fail afterwards.
func (d *DB) DropGroup(name string) error {
	d.groupMu.Lock()
	defer d.groupMu.Unlock()
	d.mu.RLock()
	g := d.groups[name]
	d.mu.RUnlock()
	if g == nil {
		return nil
	}
	r := newRecord(recDrop, g.id, 0)
	return d.submit(r.finish(), func(uint64, int64) { d.dropGroup(g) })
}

// Store is one group's log and stable state in the shared log.
type Store struct {
	d *DB
	g *groupState
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// errDropped reports a Store whose group was dropped.
var errDropped = errors.New("logstore: group was dropped")

func (s *Store) check() error {
	if s.d.isShut.Load() {
		return ErrClosed
	}
	if s.d.failed != nil {
		return s.d.failed
	}
	if s.d.byID[s.g.id] != s.g {
		return errDropped
	}
	return nil
}

// FirstIndex returns the first stored index, 0 for none.
func (s *Store) FirstIndex() (uint64, error) {
	s.d.mu.RLock()
	defer s.d.mu.RUnlock()
	return s.g.idx.first(), s.check()
}

// LastIndex returns the last stored index, 0 for none.
func (s *Store) LastIndex() (uint64, error) {
	s.d.mu.RLock()
	defer s.d.mu.RUnlock()
	return s.g.idx.last(), s.check()
}

// GetLog reads entry index into log; raft.ErrLogNotFound when absent.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	s.d.mu.RLock()
	if err := s.check(); err != nil {
		s.d.mu.RUnlock()
		return err
	}
	l, ok := s.g.idx.get(index)
	if !ok {
		s.d.mu.RUnlock()
		return raft.ErrLogNotFound
	}
	buf := make([]byte, l.n)
	_, err := s.d.segment(l.seg).f.ReadAt(buf, l.off)
	s.d.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("logstore: read entry %d of %s: %w", index, s.g.name, err)
	}
	return decodeEntry(index, buf, log, false)
}

// StoreLog appends one entry.
func (s *Store) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs appends consecutive entries and returns once they are durable.
// Stored entries from the first one's index on are replaced. Appends of
// groups that arrive at the same time share one write and one fdatasync.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	first := logs[0].Index
	encoded := make([][]byte, len(logs))
	for i, l := range logs {
		if l.Index != first+uint64(i) {
			return fmt.Errorf("logstore: %s: entries %d and %d are not consecutive", s.g.name, logs[i-1].Index, l.Index)
		}
		encoded[i] = EncodeEntry(l)
	}
	rec, offs, lens := entriesRecord(recAppend, s.g.id, first, encoded)
	g := s.g
	return s.d.submit(rec, func(seg uint64, base int64) {
		s.d.putEntries(g, first, seg, base, offs, lens, true)
	})
}

// DeleteRange removes entries min..max inclusive.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	r := newRecord(recDelete, s.g.id, 2*10)
	r.uvarint(min)
	r.uvarint(max)
	g := s.g
	return s.d.submit(r.finish(), func(uint64, int64) { s.d.deleteEntries(g, min, max) })
}

// Set stores a stable value (raft's term and vote), durably.
func (s *Store) Set(key, val []byte) error {
	r := newRecord(recStable, s.g.id, len(key)+len(val)+4)
	r.bytes(key)
	r.bytes(val)
	k, v := string(key), append([]byte(nil), val...)
	g := s.g
	return s.d.submit(r.finish(), func(uint64, int64) { g.stable[k] = v })
}

// Get reads a stable value; like raft-boltdb, a missing key is an error
// whose text raft recognises ("not found").
func (s *Store) Get(key []byte) ([]byte, error) {
	s.d.mu.RLock()
	defer s.d.mu.RUnlock()
	if err := s.check(); err != nil {
		return nil, err
	}
	v, ok := s.g.stable[string(key)]
	if !ok {
		return nil, ErrKeyNotFound
	}
	return append([]byte(nil), v...), nil
}

// SetUint64 stores a stable integer.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, appendUint64(nil, val))
}

// GetUint64 reads a stable integer; 0 with ErrKeyNotFound when unset.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: stable value %q is %d bytes", ErrCorrupt, key, len(v))
	}
	return readUint64(v), nil
}

// --- the in-memory state, changed by the committer (and by replay) under d.mu ---

func (d *DB) addGroup(id uint64, name string) *groupState {
	g := &groupState{id: id, name: name, stable: map[string][]byte{}}
	d.groups[name] = g
	d.byID[id] = g
	if id >= d.nextID {
		d.nextID = id + 1
	}
	return g
}

func (d *DB) dropGroup(g *groupState) {
	g.idx.remove(0, ^uint64(0), d.forget)
	delete(d.groups, g.name)
	delete(d.byID, g.id)
}

func (d *DB) forget(l loc) { d.live[l.seg] -= int64(l.n) }

// putEntries indexes entries first.. whose bytes lie at base+offs[i] in
// segment seg. An append (truncate) also drops what was stored past them.
func (d *DB) putEntries(g *groupState, first, seg uint64, base int64, offs []int64, lens []int, truncate bool) {
	last := first + uint64(len(offs)) - 1
	if truncate {
		last = ^uint64(0)
	}
	g.idx.remove(first, last, d.forget)
	locs := make([]loc, len(offs))
	for i := range offs {
		locs[i] = loc{seg: seg, off: base + offs[i], n: lens[i]}
		d.live[seg] += int64(lens[i])
	}
	g.idx.put(first, locs)
}

func (d *DB) deleteEntries(g *groupState, lo, hi uint64) { g.idx.remove(lo, hi, d.forget) }

// segment returns the open segment with sequence number seq (under d.mu).
func (d *DB) segment(seq uint64) *segment { return d.segs[seq-d.segs[0].seq] }
