package logstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/internal/wire"
)

// checkpointVersion is the layout of a segment's opening record; a newer
// one is refused rather than misread.
const checkpointVersion = 1

// segment is one file of the log.
type segment struct {
	seq  uint64
	f    *os.File
	size int64 // bytes of records in it: where the next record goes
}

var segmentName = regexp.MustCompile(`^([0-9]{16})\.wal$`)

func (d *DB) segmentPath(seq uint64) string {
	return filepath.Join(d.dir, fmt.Sprintf("%016d.wal", seq))
}

// load replays the segments in dir, oldest first, to rebuild the index, and
// readies the newest one for appends.
func (d *DB) load() error {
	if _, err := os.Stat(d.dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(d.dir, 0o700); err != nil {
			return err
		}
		// The new directory's own entry must be durable too.
		if err := syncDir(filepath.Dir(d.dir)); err != nil {
			return err
		}
	}
	lock, err := lockDir(d.dir)
	if err != nil {
		return err
	}
	d.lock = lock
	names, err := os.ReadDir(d.dir)
	if err != nil {
		return err
	}
	var seqs []uint64
	for _, e := range names {
		m := segmentName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		seq, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil || seq == 0 {
			return fmt.Errorf("%w: segment file name %s", ErrCorrupt, e.Name())
		}
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, seq := range seqs {
		if i > 0 && seq != seqs[i-1]+1 {
			return fmt.Errorf("%w: segment %d follows segment %d: one is missing", ErrCorrupt, seq, seqs[i-1])
		}
	}
	for i, seq := range seqs {
		newest := i == len(seqs)-1
		f, err := os.OpenFile(d.segmentPath(seq), os.O_RDWR, 0o600)
		if err != nil {
			return err
		}
		s := &segment{seq: seq, f: f}
		end, opened, err := d.replay(s, newest)
		if err != nil {
			f.Close()
			return fmt.Errorf("segment %d: %w", seq, err)
		}
		if !opened {
			// The newest segment's opening record never became durable: it
			// was being created when the process stopped, and holds nothing.
			f.Close()
			if err := os.Remove(d.segmentPath(seq)); err != nil {
				return err
			}
			break
		}
		s.size = end
		d.segs = append(d.segs, s)
		if newest {
			if err := clearTail(f, end); err != nil {
				return fmt.Errorf("segment %d: clear the unwritten tail: %w", seq, err)
			}
		}
	}
	if len(d.segs) == 0 {
		return d.newSegment(1)
	}
	return d.collect()
}

// replay applies the records of one segment. It returns the end of the last
// good record and whether the segment's opening checkpoint was there. A
// record that does not check out ends the newest segment (a write cut short
// by a crash, never acknowledged); anywhere else it is corruption.
func (d *DB) replay(s *segment, newest bool) (int64, bool, error) {
	st, err := s.f.Stat()
	if err != nil {
		return 0, false, err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, st.Size()), 1<<20)
	var off int64
	var hdr [recordHeader]byte
	var body []byte
	for {
		bad := func(why string) (int64, bool, error) {
			if newest {
				return off, off > 0, nil
			}
			return 0, false, fmt.Errorf("%w: %s at offset %d", ErrCorrupt, why, off)
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return off, off > 0, nil
			}
			return bad("short record header")
		}
		n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
		sum := binary.LittleEndian.Uint32(hdr[4:8])
		if n == 0 && sum == 0 {
			return off, off > 0, nil // the unwritten, preallocated rest
		}
		if n == 0 || n > st.Size()-off-recordHeader {
			return bad("record length past the end")
		}
		if int64(cap(body)) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return bad("short record")
		}
		if crc32.Checksum(body, castagnoli) != sum {
			return bad("record checksum mismatch")
		}
		if off == 0 && body[0] != recCheckpoint {
			return bad("segment does not open with a checkpoint")
		}
		if err := d.applyRecord(s.seq, off, body); err != nil {
			// The checksum held, so these bytes were written like this: a
			// record this build cannot apply is not a torn write.
			return 0, false, fmt.Errorf("record at offset %d: %w", off, err)
		}
		off += recordHeader + n
	}
}

// applyRecord replays one record whose body starts at base+recordHeader in
// segment seq.
func (d *DB) applyRecord(seq uint64, base int64, body []byte) error {
	kind := body[0]
	dec := wire.NewDecoder(body[1:])
	if kind == recCheckpoint {
		return d.applyCheckpoint(dec)
	}
	id := dec.Uvarint()
	if dec.Err() != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, dec.Err())
	}
	if kind == recGroup {
		name := dec.Text()
		if err := dec.Finish(); err != nil || name == "" {
			return fmt.Errorf("%w: group record: %v", ErrCorrupt, err)
		}
		if old := d.byID[id]; old != nil {
			d.dropGroup(old)
		}
		if old := d.groups[name]; old != nil {
			d.dropGroup(old)
		}
		d.addGroup(id, name)
		return nil
	}
	g := d.byID[id]
	if g == nil {
		return fmt.Errorf("%w: record %q for unknown group %d", ErrCorrupt, kind, id)
	}
	switch kind {
	case recDrop:
		if err := dec.Finish(); err != nil {
			return fmt.Errorf("%w: drop record: %v", ErrCorrupt, err)
		}
		d.dropGroup(g)
	case recStable:
		k, v := dec.Text(), dec.Bytes()
		if err := dec.Finish(); err != nil {
			return fmt.Errorf("%w: stable record: %v", ErrCorrupt, err)
		}
		g.stable[k] = append([]byte(nil), v...)
	case recDelete:
		lo, hi := dec.Uvarint(), dec.Uvarint()
		if err := dec.Finish(); err != nil {
			return fmt.Errorf("%w: delete record: %v", ErrCorrupt, err)
		}
		d.deleteEntries(g, lo, hi)
	case recAppend, recMove:
		first := dec.Uvarint()
		count := dec.Count(1)
		offs := make([]int64, count)
		lens := make([]int, count)
		for i := range count {
			e := dec.Bytes()
			// Where e starts, counted from the record's first byte.
			offs[i] = int64(recordHeader + len(body) - dec.Len() - len(e))
			lens[i] = len(e)
		}
		if err := dec.Finish(); err != nil || count == 0 || first == 0 {
			return fmt.Errorf("%w: entries record: %v", ErrCorrupt, err)
		}
		d.putEntries(g, first, seq, base, offs, lens, kind == recAppend)
	default:
		return fmt.Errorf("%w: unknown record kind %q (written by a newer raftkv?)", ErrCorrupt, kind)
	}
	return nil
}

// applyCheckpoint makes the groups and stable values what the record says.
func (d *DB) applyCheckpoint(dec *wire.Decoder) error {
	if v := dec.Uvarint(); dec.Err() == nil && v != checkpointVersion {
		return fmt.Errorf("%w: checkpoint layout %d, this build reads %d", ErrCorrupt, v, checkpointVersion)
	}
	next := dec.Uvarint()
	n := dec.Count(2)
	seen := map[uint64]bool{}
	for range n {
		id, name := dec.Uvarint(), dec.Text()
		kvs := dec.Count(2)
		if dec.Err() != nil {
			break
		}
		g := d.byID[id]
		if g == nil || g.name != name {
			if g != nil {
				d.dropGroup(g)
			}
			if old := d.groups[name]; old != nil {
				d.dropGroup(old)
			}
			g = d.addGroup(id, name)
		}
		g.stable = map[string][]byte{}
		for range kvs {
			k, v := dec.Text(), dec.Bytes()
			g.stable[k] = append([]byte(nil), v...)
		}
		seen[id] = true
	}
	if err := dec.Finish(); err != nil {
		return fmt.Errorf("%w: checkpoint record: %v", ErrCorrupt, err)
	}
	for id, g := range d.byID {
		if !seen[id] {
			d.dropGroup(g)
		}
	}
	if next > d.nextID {
		d.nextID = next
	}
	return nil
}

// checkpointRecord states every group and its stable values.
func (d *DB) checkpointRecord() []byte {
	r := newRecord(recCheckpoint, checkpointVersion, 64*len(d.groups))
	r.uvarint(d.nextID)
	ids := make([]uint64, 0, len(d.byID))
	for id := range d.byID {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	r.uvarint(uint64(len(ids)))
	for _, id := range ids {
		g := d.byID[id]
		r.uvarint(id)
		r.bytes([]byte(g.name))
		keys := make([]string, 0, len(g.stable))
		for k := range g.stable {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		r.uvarint(uint64(len(keys)))
		for _, k := range keys {
			r.bytes([]byte(k))
			r.bytes(g.stable[k])
		}
	}
	return r.finish()
}

// newSegment creates segment seq, preallocated, opening with a checkpoint
// of the groups, durable before it is used.
func (d *DB) newSegment(seq uint64) error {
	path := d.segmentPath(seq)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := preallocate(f, d.opts.SegmentSize); err != nil {
		return fail(err)
	}
	rec := d.checkpointRecord()
	if _, err := f.WriteAt(rec, 0); err != nil {
		return fail(err)
	}
	if err := fdatasync(f); err != nil {
		return fail(err)
	}
	if err := syncDir(d.dir); err != nil {
		return fail(err)
	}
	d.mu.Lock()
	d.segs = append(d.segs, &segment{seq: seq, f: f, size: int64(len(rec))})
	d.mu.Unlock()
	return nil
}

// collect deletes the oldest segments while nothing indexed lies in them.
// Once more than MaxSegments pile up, the oldest one's live entries are
// copied forward first, if they are few (under a quarter of a segment), so
// a rarely written group does not keep old segments forever.
func (d *DB) collect() error {
	for len(d.segs) > 1 {
		old := d.segs[0]
		if d.live[old.seq] > 0 {
			if len(d.segs) <= d.opts.MaxSegments || d.live[old.seq] > d.opts.SegmentSize/4 {
				return nil
			}
			if err := d.moveForward(old); err != nil {
				return err
			}
		}
		d.mu.Lock()
		d.segs = d.segs[1:]
		delete(d.live, old.seq)
		d.mu.Unlock()
		old.f.Close()
		if err := os.Remove(d.segmentPath(old.seq)); err != nil {
			return err
		}
		if err := syncDir(d.dir); err != nil {
			return err
		}
	}
	return nil
}

// moveForward copies the entries indexed in segment old to the head as move
// records, durably, and points the index at the copies.
func (d *DB) moveForward(old *segment) error {
	type moved struct {
		g          *groupState
		first      uint64
		offs       []int64
		lens       []int
		recordBase int64
	}
	var recs [][]byte
	var moves []moved
	ids := make([]uint64, 0, len(d.byID))
	for id := range d.byID {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var readErr error
	for _, id := range ids {
		g := d.byID[id]
		var first uint64
		var encoded [][]byte
		flush := func() {
			if len(encoded) == 0 {
				return
			}
			rec, offs, lens := entriesRecord(recMove, g.id, first, encoded)
			recs = append(recs, rec)
			moves = append(moves, moved{g: g, first: first, offs: offs, lens: lens})
			encoded = nil
		}
		g.idx.each(func(i uint64, l loc) {
			if l.seg != old.seq || readErr != nil {
				flush()
				return
			}
			if len(encoded) > 0 && i != first+uint64(len(encoded)) {
				flush()
			}
			if len(encoded) == 0 {
				first = i
			}
			b := make([]byte, l.n)
			if _, err := old.f.ReadAt(b, l.off); err != nil {
				readErr = err
				return
			}
			encoded = append(encoded, b)
		})
		flush()
		if readErr != nil {
			return readErr
		}
	}
	head := d.segs[len(d.segs)-1]
	var buf []byte
	for i, rec := range recs {
		moves[i].recordBase = head.size + int64(len(buf))
		buf = append(buf, rec...)
	}
	if _, err := head.f.WriteAt(buf, head.size); err != nil {
		return err
	}
	if err := fdatasync(head.f); err != nil {
		return err
	}
	d.mu.Lock()
	head.size += int64(len(buf))
	for _, m := range moves {
		d.putEntries(m.g, m.first, head.seq, m.recordBase, m.offs, m.lens, false)
	}
	d.mu.Unlock()
	return nil
}

// commitLoop takes the first waiting request, then every other one already
// waiting, and makes them durable together. When the log is idle a request
// is written at once, and requests that arrive while a write is syncing
// form the next one. Only when the last write was large (Options.Hold)
// does the next one wait a little for more.
func (d *DB) commitLoop() {
	defer close(d.done)
	var buf []byte
	var lastEnd time.Time
	lastBatch := 0
	for first := range d.reqs {
		batch := []*request{first}
		if hold := d.opts.holdFor(lastBatch, time.Since(lastEnd)); hold > 0 {
			batch = d.gatherFor(batch, hold)
		}
		// Let the goroutines woken with the last batch's answers run
		// first: the groups that shared that sync append again at about
		// the same moment, and this keeps them together (DESIGN.md, "Group
		// commit").
		runtime.Gosched()
	gather:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-d.reqs:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			default:
				break gather
			}
		}
		err := d.commit(batch, &buf)
		lastEnd, lastBatch = time.Now(), len(batch)
		for _, r := range batch {
			r.err <- err
		}
	}
}

// gatherFor adds the requests that arrive within hold to batch, up to
// maxBatch, and stops early when the log closes.
func (d *DB) gatherFor(batch []*request, hold time.Duration) []*request {
	t := time.NewTimer(hold)
	defer t.Stop()
	for len(batch) < maxBatch {
		select {
		case r, ok := <-d.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		case <-t.C:
			return batch
		}
	}
	return batch
}

// commit writes a batch at the head (a new segment when it would not fit),
// syncs it, and applies it to the index.
func (d *DB) commit(batch []*request, buf *[]byte) error {
	if d.failed != nil {
		return d.failed
	}
	size := int64(0)
	for _, r := range batch {
		size += int64(len(r.rec))
	}
	head := d.segs[len(d.segs)-1]
	rotated := false
	if head.size+size > d.opts.SegmentSize && head.size > 0 {
		if err := d.newSegment(head.seq + 1); err != nil {
			return d.fail(fmt.Errorf("start segment %d: %w", head.seq+1, err))
		}
		head = d.segs[len(d.segs)-1]
		rotated = true
	}
	bases := make([]int64, len(batch))
	data := batch[0].rec
	if len(batch) > 1 {
		b := (*buf)[:0]
		for i, r := range batch {
			bases[i] = int64(len(b))
			b = append(b, r.rec...)
		}
		*buf, data = b, b
	}
	if _, err := head.f.WriteAt(data, head.size); err != nil {
		return d.fail(fmt.Errorf("write segment %d: %w", head.seq, err))
	}
	synced := time.Now()
	if err := fdatasync(head.f); err != nil {
		return d.fail(fmt.Errorf("sync segment %d: %w", head.seq, err))
	}
	d.syncs.Observe(time.Since(synced))
	d.mu.Lock()
	for i, r := range batch {
		if r.apply != nil {
			r.apply(head.seq, head.size+bases[i])
		}
	}
	head.size += size
	d.mu.Unlock()
	if cap(*buf) > 4<<20 {
		*buf = nil // one huge batch does not pin its buffer for good
	}
	d.commits.Add(1)
	d.batched.Add(uint64(len(batch)))
	if rotated {
		if err := d.collect(); err != nil {
			return d.fail(fmt.Errorf("delete old segments: %w", err))
		}
	}
	return nil
}

// fail records the first write failure. After it nothing more is written
// or served: what is on disk past the last good sync is unknown, and a
// restart replays the log to find out.
func (d *DB) fail(err error) error {
	err = fmt.Errorf("logstore: %w (restart the node)", err)
	d.mu.Lock()
	if d.failed == nil {
		d.failed = err
	}
	err = d.failed
	d.mu.Unlock()
	return err
}

func (d *DB) closeFiles() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var first error
	for _, s := range d.segs {
		if err := s.f.Close(); err != nil && first == nil {
			first = err
		}
	}
	d.segs = nil
	if d.lock != nil {
		if err := d.lock.Close(); err != nil && first == nil {
			first = err
		}
		d.lock = nil
	}
	return first
}

// clearTail zeroes a segment from end on, so bytes of a write cut short by
// a crash can never be read as records after new ones are written there.
func clearTail(f *os.File, end int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() <= end {
		return nil
	}
	if err := zeroRange(f, end, st.Size()-end); err != nil {
		return err
	}
	return fdatasync(f)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// writeZeros is zeroRange for file systems without a call for it.
func writeZeros(f *os.File, off, n int64) error {
	zeros := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}
