package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The change history: a bounded, in-memory log of the key changes the
// replica applied, oldest first, which watches read (docs/watch.md). It is
// fed only where Apply sets or deletes a key (applyPut, applyDelete,
// applyDeletePrefix, writeKey), so a put, a delete, a prefix delete and a
// transaction's writes (single-shard or resolved 2PC) are all in it, and
// nothing else is. It is not part of the checkpoint: it starts empty at
// New and at every Restore, at the applied index then, and replicas keep
// different amounts of it. What it holds for a given revision is the same
// on every replica, because it is a function of the applied entries only.

// ChangeKind says what a change did to its key.
type ChangeKind uint8

// Kinds of change.
const (
	ChangePut ChangeKind = iota + 1
	ChangeDelete
)

func (k ChangeKind) String() string {
	switch k {
	case ChangePut:
		return "put"
	case ChangeDelete:
		return "delete"
	}
	return "ChangeKind(" + strconv.Itoa(int(k)) + ")"
}

// Change is one key set or deleted by one log entry.
type Change struct {
	Kind ChangeKind
	// KV is the key after a put; for a delete only Key is set, with the
	// revisions the key had when it was deleted.
	KV KV
	// Revision is the index of the entry that made the change.
	Revision uint64
	// Seq counts the changes of one entry from 0; Last marks its last one.
	// A transaction or a prefix delete changes several keys in one entry.
	Seq  uint32
	Last bool
}

// Pos is a point in a shard's change history that a watch has read up to.
// The zero Part means every change up to and including revision Rev;
// Part n > 0 means every change before Rev and the first n changes of Rev
// (a reader stopped within a transaction). Its text form is "Rev" or
// "Rev.Part".
type Pos struct {
	Rev  uint64
	Part uint32
}

// After returns the position just past c.
func After(c Change) Pos {
	if c.Last {
		return Pos{Rev: c.Revision}
	}
	return Pos{Rev: c.Revision, Part: c.Seq + 1}
}

// covers reports whether c is at or before p (already read).
func (p Pos) covers(rev uint64, seq uint32) bool {
	return rev < p.Rev || (rev == p.Rev && (p.Part == 0 || seq < p.Part))
}

// complete is the last revision all of whose changes are at or before p.
func (p Pos) complete() uint64 {
	if p.Part == 0 {
		return p.Rev
	}
	return p.Rev - 1
}

func (p Pos) String() string {
	if p.Part == 0 {
		return strconv.FormatUint(p.Rev, 10)
	}
	return strconv.FormatUint(p.Rev, 10) + "." + strconv.FormatUint(uint64(p.Part), 10)
}

// ParsePos reads "R" or "R.n" (n >= 1, R >= 1 with a part).
func ParsePos(s string) (Pos, error) {
	rev, part, hasPart := strings.Cut(s, ".")
	r, err := strconv.ParseUint(rev, 10, 64)
	if err != nil {
		return Pos{}, fmt.Errorf("position %q: want a revision such as 120, or 120.2", s)
	}
	if !hasPart {
		return Pos{Rev: r}, nil
	}
	n, err := strconv.ParseUint(part, 10, 32)
	if err != nil || n == 0 || r == 0 {
		return Pos{}, fmt.Errorf("position %q: the part after the dot counts changes read of that revision, from 1", s)
	}
	return Pos{Rev: r, Part: uint32(n)}, nil
}

// ErrCompacted is matched (errors.Is) by a *CompactedError.
var ErrCompacted = errors.New("fsm: change history compacted")

// CompactedError reports that the history no longer reaches back to a
// position: changes after it were dropped to bound memory, or were
// applied before this replica's last checkpoint load or restart.
type CompactedError struct {
	Group string
	From  Pos
	// Oldest is the oldest revision whose changes are all kept: a watch
	// can resume from position Oldest-1 or later.
	Oldest uint64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("%s: the change history here starts at revision %d; changes after %s are gone", e.Group, e.Oldest, e.From)
}

func (e *CompactedError) Unwrap() error { return ErrCompacted }

// HistoryLimits bound one shard's change history. The oldest entries'
// changes are dropped (a whole entry at a time) once either is exceeded;
// the newest entry is always kept.
type HistoryLimits struct {
	Changes int // changes kept
	Bytes   int // key and value bytes kept, plus changeOverhead per change
}

// DefaultHistoryLimits keep about the last 10 000 changes of a shard, or
// 16 MiB of them.
func DefaultHistoryLimits() HistoryLimits {
	return HistoryLimits{Changes: 10000, Bytes: 16 << 20}
}

// changeOverhead is what one change costs besides its key and value.
const changeOverhead = 96

type change struct {
	kind                 ChangeKind
	key                  string
	value                []byte // shared with the tree entry: never modified
	rev, create, version uint64
	modBefore, createdAt uint64 // a delete: the key's revisions then
	seq                  uint32
	last                 bool
}

func (c *change) size() int { return changeOverhead + len(c.key) + len(c.value) }

func (c *change) public() Change {
	out := Change{Kind: c.kind, Revision: c.rev, Seq: c.seq, Last: c.last}
	if c.kind == ChangePut {
		out.KV = KV{Key: c.key, Value: bytes.Clone(c.value), CreateRevision: c.create, ModRevision: c.rev, Version: c.version}
	} else {
		out.KV = KV{Key: c.key, CreateRevision: c.createdAt, ModRevision: c.modBefore, Version: c.version}
	}
	return out
}

// history is the ring of changes, guarded by the FSM's mu (Apply appends
// under the write lock, readers scan under the read lock). The ring grows
// (doubling) only while the limits let it hold more; once it holds what
// they allow, adding and dropping changes allocates nothing.
type history struct {
	limits HistoryLimits
	ring   []change // the live changes are ring[head], ring[head+1], ... (mod len), n of them, oldest first
	head   int
	n      int
	bytes  int
	// floor is the revision up to which the history is incomplete: every
	// change with a revision above it is in the ring.
	floor uint64
}

func newHistory(l HistoryLimits, floor uint64) *history {
	return &history{limits: l, floor: floor}
}

// len is the number of live changes.
func (h *history) len() int { return h.n }

// at returns the i-th live change, oldest first (0 <= i < len).
func (h *history) at(i int) *change {
	i += h.head
	if i >= len(h.ring) {
		i -= len(h.ring)
	}
	return &h.ring[i]
}

// add records a change made by the entry at rev. Changes of one entry
// arrive together; the previous change is marked last when a new entry
// starts, and by seal at the end of the entry.
func (h *history) add(c change) {
	if h.n > 0 {
		if prev := h.at(h.n - 1); prev.rev == c.rev {
			c.seq = prev.seq + 1
		}
	}
	if h.n == len(h.ring) {
		h.resize(max(64, 2*len(h.ring)))
	}
	*h.at(h.n) = c
	h.n++
	h.bytes += c.size()
}

// resize moves the live changes, in order, to the start of a new ring of
// size changes (at least h.n).
func (h *history) resize(size int) {
	ring := make([]change, size)
	for i := range h.n {
		ring[i] = *h.at(i)
	}
	h.ring, h.head = ring, 0
}

// seal marks the end of the entry at rev and enforces the limits.
func (h *history) seal(rev uint64) {
	if h.n > 0 {
		if newest := h.at(h.n - 1); newest.rev == rev {
			newest.last = true
		}
	}
	for h.n > 0 && h.at(0).rev != h.at(h.n-1).rev { // the newest entry is always kept whole
		if h.n <= h.limits.Changes && h.bytes <= h.limits.Bytes {
			break
		}
		drop := h.at(0).rev
		for h.n > 0 && h.at(0).rev == drop {
			oldest := h.at(0)
			h.bytes -= oldest.size()
			*oldest = change{} // let the value go
			h.head++
			if h.head == len(h.ring) {
				h.head = 0
			}
			h.n--
		}
		h.floor = drop
	}
	// One entry of many changes (a large prefix delete) grows the ring
	// past what the limits keep; give the room back once they are dropped.
	if len(h.ring) > 2*max(64, h.limits.Changes) && 4*h.n <= len(h.ring) {
		h.resize(max(64, 2*h.n))
	}
}

// start returns the index (for at) of the first change after p.
func (h *history) start(p Pos) int {
	return sort.Search(h.n, func(i int) bool { c := h.at(i); return !p.covers(c.rev, c.seq) })
}

// recordPut and recordDelete feed s's history, if it keeps one (a fork
// for a backup does not).
func (s *state) recordPut(e entry) {
	if s.hist != nil {
		s.hist.add(change{kind: ChangePut, key: e.key, value: e.value, rev: e.mod, create: e.create, version: e.version})
	}
}

func (s *state) recordDelete(idx uint64, e entry) {
	if s.hist != nil {
		s.hist.add(change{kind: ChangeDelete, key: e.key, rev: idx, createdAt: e.create, modBefore: e.mod, version: e.version})
	}
}

// ChangesPage is one read of the history.
type ChangesPage struct {
	Changes []Change
	// Through is the applied index at the read. When More is false,
	// every change up to Through has been returned: the reader may move
	// on to Pos{Rev: Through}.
	Through uint64
	// More is set when the page was cut by its limits.
	More bool
}

// Changes returns, in order, the changes after from of the keys that start
// with prefix: at most limit of them, and no more once their keys and
// values pass maxBytes (at least one is returned). A from the history no
// longer reaches is a *CompactedError. Zero limits mean no limit.
func (f *FSM) Changes(prefix string, from Pos, limit, maxBytes int) (ChangesPage, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	page := ChangesPage{Through: f.applied.Load()}
	h := f.st.hist
	if h == nil || from.complete() < h.floor {
		return page, f.compactedLocked(from)
	}
	size := 0
	for i := h.start(from); i < h.len(); i++ {
		c := h.at(i)
		if !strings.HasPrefix(c.key, prefix) {
			continue
		}
		if (limit > 0 && len(page.Changes) == limit) || (maxBytes > 0 && size > maxBytes) {
			page.More = true
			break
		}
		size += len(c.key) + len(c.value)
		page.Changes = append(page.Changes, c.public())
	}
	return page, nil
}

func (f *FSM) compactedLocked(from Pos) error {
	oldest := f.applied.Load() + 1
	if h := f.st.hist; h != nil {
		oldest = h.floor + 1
	}
	return &CompactedError{Group: f.group, From: from, Oldest: oldest}
}

// Changed reports whether a key matching key (prefix false) or starting
// with it (prefix true) changed after revision rev, and the applied index
// at the check (wait for the next one before asking again). When the
// history does not reach back to rev it answers true unless it can tell
// otherwise from the state (the key exists, unchanged since rev): a
// blocking query may then wake without a change, never miss one.
func (f *FSM) Changed(key string, prefix bool, rev uint64) (changed bool, applied uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	applied = f.applied.Load()
	if !prefix {
		// A key that exists tells by itself: any write after rev, a
		// re-create after a delete included, leaves its mod above rev.
		if e, ok := f.st.kv.Get(entry{key: key}); ok {
			return e.mod > rev, applied
		}
	}
	h := f.st.hist
	if h == nil || rev < h.floor {
		return true, applied
	}
	for i := h.start(Pos{Rev: rev}); i < h.len(); i++ {
		if k := h.at(i).key; k == key || (prefix && strings.HasPrefix(k, key)) {
			return true, applied
		}
	}
	return false, applied
}

// HistoryStart returns the oldest revision whose changes this replica's
// history holds in full (its floor + 1), for status and docs.
func (f *FSM) HistoryStart() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.st.hist == nil {
		return f.applied.Load() + 1
	}
	return f.st.hist.floor + 1
}

// SetHistoryLimits changes how much change history the FSM keeps; the
// new limits apply from the next applied entry on. A zero field keeps
// that limit's default.
func (f *FSM) SetHistoryLimits(l HistoryLimits) {
	d := DefaultHistoryLimits()
	if l.Changes <= 0 {
		l.Changes = d.Changes
	}
	if l.Bytes <= 0 {
		l.Bytes = d.Bytes
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits = l
	if f.st.hist != nil {
		f.st.hist.limits = l
	}
}
