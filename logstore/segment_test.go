package logstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

func openDir(t testing.TB, dir string, opts Options) *DB {
	t.Helper()
	d, err := OpenOptions(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func mustGroup(t testing.TB, d *DB, name string) *Store {
	t.Helper()
	s, err := d.Group(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantEntries checks that s holds exactly first..last, each with the data
// value(i).
func wantEntries(t *testing.T, s *Store, first, last uint64, value func(uint64) string) {
	t.Helper()
	f, _ := s.FirstIndex()
	l, _ := s.LastIndex()
	if f != first || l != last {
		t.Fatalf("%s holds %d..%d, want %d..%d", s.g.name, f, l, first, last)
	}
	for i := first; i <= last && first > 0; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil {
			t.Fatalf("%s entry %d: %v", s.g.name, i, err)
		}
		if got.Index != i || string(got.Data) != value(i) {
			t.Fatalf("%s entry %d reads back as index %d data %q, want %q", s.g.name, i, got.Index, got.Data, value(i))
		}
	}
}

func busyValue(i uint64) string  { return fmt.Sprintf("busy-%d-%0100d", i, i) }
func quietValue(i uint64) string { return fmt.Sprint("quiet-", i) }

// A busy group that compacts its log as raft does, next to a quiet group
// that wrote a few entries long ago: old segments go away (the quiet group's
// entries are copied forward), and everything live survives a reopen.
func TestOldSegmentsAreDeletedAndLiveEntriesKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	opts := Options{SegmentSize: 16 << 10, MaxSegments: 3}
	d := openDir(t, dir, opts)
	quiet, busy := mustGroup(t, d, "meta"), mustGroup(t, d, "shard-1")
	for i := uint64(1); i <= 5; i++ {
		if err := quiet.StoreLog(entry(i, quietValue(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := quiet.SetUint64([]byte("CurrentTerm"), 4); err != nil {
		t.Fatal(err)
	}
	const total, keep = 3000, 100
	for i := uint64(1); i <= total; i++ {
		if err := busy.StoreLog(entry(i, busyValue(i))); err != nil {
			t.Fatal(err)
		}
		if i%keep == 0 {
			if err := busy.DeleteRange(1, i-keep); err != nil {
				t.Fatal(err)
			}
		}
		if n := d.Segments(); n > opts.MaxSegments+1 {
			t.Fatalf("after %d appends the log has %d segments, want at most %d", i, n, opts.MaxSegments+1)
		}
	}
	if d.segs[0].seq < 10 {
		t.Fatalf("the oldest segment left is number %d: old segments were not deleted", d.segs[0].seq)
	}
	wantEntries(t, quiet, 1, 5, quietValue)
	wantEntries(t, busy, total-keep+1, total, busyValue)
	d.Close()

	d = openDir(t, dir, opts)
	quiet, busy = mustGroup(t, d, "meta"), mustGroup(t, d, "shard-1")
	wantEntries(t, quiet, 1, 5, quietValue)
	wantEntries(t, busy, total-keep+1, total, busyValue)
	if term, err := quiet.GetUint64([]byte("CurrentTerm")); err != nil || term != 4 {
		t.Fatalf("meta's term after segments were deleted and the log reopened: %d, %v", term, err)
	}
}

// An append from an index already stored replaces the tail from there, and
// a log may have a gap (a follower that installed a snapshot far ahead).
func TestAppendsReplaceTheTailAndGapsAreKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	d := openDir(t, dir, Options{})
	s := mustGroup(t, d, "shard-1")
	for i := uint64(1); i <= 10; i++ {
		if err := s.StoreLog(entry(i, quietValue(i))); err != nil {
			t.Fatal(err)
		}
	}
	replaced := func(i uint64) string {
		if i >= 5 {
			return fmt.Sprint("new-", i)
		}
		return quietValue(i)
	}
	if err := s.StoreLogs([]*raft.Log{entry(5, replaced(5)), entry(6, replaced(6))}); err != nil {
		t.Fatal(err)
	}
	wantEntries(t, s, 1, 6, replaced)
	if err := s.StoreLog(entry(100, "far")); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		if f, _ := s.FirstIndex(); f != 1 {
			t.Fatalf("first index %d, want 1", f)
		}
		if l, _ := s.LastIndex(); l != 100 {
			t.Fatalf("last index %d, want 100", l)
		}
		var got raft.Log
		if err := s.GetLog(50, &got); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("entry in the gap: %v, want raft.ErrLogNotFound", err)
		}
		if err := s.GetLog(6, &got); err != nil || string(got.Data) != "new-6" {
			t.Fatalf("entry 6: %q, %v", got.Data, err)
		}
		if err := s.GetLog(100, &got); err != nil || string(got.Data) != "far" {
			t.Fatalf("entry 100: %q, %v", got.Data, err)
		}
	}
	check()
	d.Close()
	d = openDir(t, dir, Options{})
	s = mustGroup(t, d, "shard-1")
	check()
	if err := s.DeleteRange(1, 99); err != nil {
		t.Fatal(err)
	}
	wantEntries(t, s, 100, 100, func(uint64) string { return "far" })
}

// A crash in the middle of a write leaves part of a record at the end of
// the newest segment. It was never acknowledged: the log opens without it,
// and writes after the reopen are read back whole by the next one.
func TestATornWriteAtTheEndIsDropped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	d := openDir(t, dir, Options{})
	s := mustGroup(t, d, "shard-1")
	for i := uint64(1); i <= 20; i++ {
		if err := s.StoreLog(entry(i, quietValue(i))); err != nil {
			t.Fatal(err)
		}
	}
	head := d.segs[len(d.segs)-1]
	end, path := head.size, d.segmentPath(head.seq)
	d.Close()

	// What a torn write of entries 21..23 leaves: the whole record but for
	// its last bytes.
	rec, _, _ := entriesRecord(recAppend, s.g.id, 21, [][]byte{
		EncodeEntry(entry(21, "lost")), EncodeEntry(entry(22, "lost")), EncodeEntry(entry(23, "lost"))})
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(rec[:len(rec)-5], end); err != nil {
		t.Fatal(err)
	}
	f.Close()

	d = openDir(t, dir, Options{})
	s = mustGroup(t, d, "shard-1")
	wantEntries(t, s, 1, 20, quietValue)
	if err := s.StoreLog(entry(21, quietValue(21))); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d = openDir(t, dir, Options{})
	wantEntries(t, mustGroup(t, d, "shard-1"), 1, 21, quietValue)
}

// Damage anywhere but at the end of the newest segment is not a torn write:
// the log refuses to open rather than lose entries quietly.
func TestDamageInAnOlderSegmentIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	opts := Options{SegmentSize: 4 << 10, MaxSegments: 100}
	d := openDir(t, dir, opts)
	s := mustGroup(t, d, "shard-1")
	for i := uint64(1); i <= 200; i++ {
		if err := s.StoreLog(entry(i, busyValue(i))); err != nil {
			t.Fatal(err)
		}
	}
	if d.Segments() < 3 {
		t.Fatalf("200 entries made %d segments of 4 KiB", d.Segments())
	}
	first := d.segmentPath(d.segs[0].seq)
	d.Close()
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	b[1000] ^= 0xff
	if err := os.WriteFile(first, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOptions(dir, opts); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a damaged older segment: %v, want ErrCorrupt", err)
	}
}

func TestIndexRunsSplitAndJoin(t *testing.T) {
	var x index
	at := func(n int) []loc {
		l := make([]loc, n)
		for i := range l {
			l[i] = loc{seg: 1, n: 1}
		}
		return l
	}
	x.put(1, at(10)) // 1..10
	x.put(20, at(5)) // 1..10 20..24
	x.put(11, at(9)) // 1..24, joined
	x.remove(5, 7, func(loc) {})
	x.put(5, at(3)) // joined again
	x.remove(1, 2, func(loc) {})
	if len(x.runs) != 1 || x.first() != 3 || x.last() != 24 {
		t.Fatalf("runs %+v: want one run 3..24", x.runs)
	}
	x.remove(10, 12, func(loc) {})
	if len(x.runs) != 2 || x.first() != 3 || x.last() != 24 {
		t.Fatalf("runs after cutting 10..12: %+v", x.runs)
	}
	if _, ok := x.get(11); ok {
		t.Fatal("index 11 was removed")
	}
	if _, ok := x.get(13); !ok {
		t.Fatal("index 13 is stored")
	}
	gone := 0
	x.remove(0, ^uint64(0), func(loc) { gone++ })
	if gone != 19 || len(x.runs) != 0 || x.first() != 0 {
		t.Fatalf("removing everything dropped %d locations, left %+v", gone, x.runs)
	}
}

// Whatever bytes a segment file holds, opening the log answers an error or
// a log whose entries can be read; it never panics.
func FuzzOpenSegment(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "seed")
	d, err := OpenOptions(dir, Options{SegmentSize: 1 << 10})
	if err != nil {
		f.Fatal(err)
	}
	s, _ := d.Group("shard-1")
	_ = s.StoreLogs([]*raft.Log{entry(1, "a"), entry(2, "b")})
	_ = s.SetUint64([]byte("CurrentTerm"), 3)
	_ = s.DeleteRange(1, 1)
	d.Close()
	seed, _ := os.ReadFile(filepath.Join(dir, "0000000000000001.wal"))
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "0000000000000001.wal"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := OpenOptions(dir, Options{SegmentSize: 1 << 10})
		if err != nil {
			return
		}
		defer d.Close()
		for _, g := range d.groups {
			s := &Store{d: d, g: g}
			first, _ := s.FirstIndex()
			last, _ := s.LastIndex()
			for i := first; i <= last && i-first < 100; i++ {
				var l raft.Log
				_ = s.GetLog(i, &l)
			}
		}
	})
}
