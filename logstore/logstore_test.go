package logstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func openTemp(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raft-wal")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func entry(i uint64, data string) *raft.Log {
	return &raft.Log{Index: i, Term: 3, Type: raft.LogCommand, Data: []byte(data),
		Extensions: []byte("x"), AppendedAt: time.Unix(1700000000, 12345)}
}

func TestEntriesRoundTripAndRangesAreDeleted(t *testing.T) {
	d, _ := openTemp(t)
	s, err := d.Group("shard-1")
	if err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 0 {
		t.Fatalf("empty store: first index %d", first)
	}
	var batch []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		batch = append(batch, entry(i, fmt.Sprint("v", i)))
	}
	if err := s.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	var got raft.Log
	if err := s.GetLog(7, &got); err != nil {
		t.Fatal(err)
	}
	want := entry(7, "v7")
	if got.Index != 7 || got.Term != 3 || got.Type != raft.LogCommand || string(got.Data) != "v7" ||
		string(got.Extensions) != "x" || !got.AppendedAt.Equal(want.AppendedAt) {
		t.Fatalf("entry 7 read back as %+v", got)
	}
	if err := s.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 5 || last != 10 {
		t.Fatalf("after deleting 1..4: first %d last %d, want 5 and 10", first, last)
	}
	if err := s.GetLog(3, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("deleted entry: %v, want raft.ErrLogNotFound", err)
	}
}

func TestGroupsAreSeparateAndSurviveAReopen(t *testing.T) {
	d, path := openTemp(t)
	a, _ := d.Group("meta")
	b, _ := d.Group("shard-1")
	if err := a.StoreLog(entry(1, "meta-1")); err != nil {
		t.Fatal(err)
	}
	if err := b.StoreLogs([]*raft.Log{entry(1, "s-1"), entry(2, "s-2")}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetUint64([]byte("CurrentTerm"), 9); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	a2, _ := d2.Group("meta")
	b2, _ := d2.Group("shard-1")
	if last, _ := a2.LastIndex(); last != 1 {
		t.Fatalf("meta's last index %d after reopen, want 1", last)
	}
	if last, _ := b2.LastIndex(); last != 2 {
		t.Fatalf("shard-1's last index %d after reopen, want 2", last)
	}
	if term, err := a2.GetUint64([]byte("CurrentTerm")); err != nil || term != 9 {
		t.Fatalf("meta's term after reopen: %d %v", term, err)
	}
	if _, err := b2.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("shard-1 has no term yet: %v, want raft's \"not found\"", err)
	}
}

// Appends of many groups at once all commit, each exactly once, whatever
// batches the committer makes of them.
func TestConcurrentAppendsOfManyGroupsAllCommit(t *testing.T) {
	d, path := openTemp(t)
	const groups, appends = 6, 50
	var wg sync.WaitGroup
	errs := make(chan error, groups)
	for g := 0; g < groups; g++ {
		s, err := d.Group(fmt.Sprint("shard-", g))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= appends; i++ {
				if err := s.StoreLogs([]*raft.Log{entry(2*i-1, "a"), entry(2*i, "b")}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := d.Stats()
	if st.Requests < groups*appends || st.Writes == 0 || st.Writes > st.Requests || st.SyncSeconds <= 0 {
		t.Fatalf("stats after %d appends: %+v", groups*appends, st)
	}
	d.Close()
	d2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	for g := 0; g < groups; g++ {
		s, _ := d2.Group(fmt.Sprint("shard-", g))
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		if first != 1 || last != 2*appends {
			t.Fatalf("shard-%d holds %d..%d, want 1..%d", g, first, last, 2*appends)
		}
	}
}

func TestAClosedStoreRefusesWork(t *testing.T) {
	d, _ := openTemp(t)
	s, _ := d.Group("meta")
	d.Close()
	if err := s.StoreLog(entry(1, "x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, err := s.LastIndex(); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

func TestACorruptEntryIsAnErrorNotAPanic(t *testing.T) {
	var l raft.Log
	for _, v := range [][]byte{nil, {9}, {entryVersion, 1, 0xff}, append(EncodeEntry(entry(1, "ok")), 7)} {
		if err := DecodeEntry(1, v, &l); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode %x: %v, want ErrCorrupt", v, err)
		}
	}
}

func FuzzDecodeLog(f *testing.F) {
	f.Add(EncodeEntry(entry(5, "value")))
	f.Add(EncodeEntry(&raft.Log{Type: raft.LogConfiguration}))
	f.Fuzz(func(t *testing.T, v []byte) {
		var l raft.Log
		if err := DecodeEntry(1, v, &l); err != nil {
			return
		}
		var again raft.Log
		if err := DecodeEntry(1, EncodeEntry(&l), &again); err != nil || again.Term != l.Term || string(again.Data) != string(l.Data) {
			t.Fatalf("%+v comes back as %+v, %v", l, again, err)
		}
	})
}

func TestASecondOpenOfTheSameLogIsRefusedUntilTheFirstCloses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wal")
	first, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if second, err := Open(path); !errors.Is(err, ErrLocked) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second open while the first is open: %v, want ErrLocked", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path)
	if err != nil {
		t.Fatalf("open after the first closed: %v", err)
	}
	again.Close()
}
