package logstore

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestTheCommitterHoldsOnlyAfterALargeWrite(t *testing.T) {
	o := Options{Hold: time.Millisecond, HoldAfter: 3}
	for _, c := range []struct {
		lastBatch int
		since     time.Duration
		want      time.Duration
	}{
		{lastBatch: 0, since: 0, want: 0},                                           // nothing written yet
		{lastBatch: 2, since: 0, want: 0},                                           // a small write: no wait
		{lastBatch: 3, since: 0, want: time.Millisecond},                            // a large one: the whole window
		{lastBatch: 8, since: 400 * time.Microsecond, want: 600 * time.Microsecond}, // the rest of it
		{lastBatch: 8, since: 2 * time.Millisecond, want: 0},                        // the window has passed
	} {
		if got := o.holdFor(c.lastBatch, c.since); got != c.want {
			t.Errorf("after a write of %d requests %v ago: hold %v, want %v", c.lastBatch, c.since, got, c.want)
		}
	}
	if got := (Options{Hold: -1, HoldAfter: 1}).holdFor(10, 0); got != 0 {
		t.Errorf("a negative Hold turns the window off, got %v", got)
	}
	if d := (Options{}).withDefaults(); d.Hold != DefaultHold || d.HoldAfter != 3 {
		t.Errorf("defaults: Hold %v, HoldAfter %d", d.Hold, d.HoldAfter)
	}
}

// One writer appending one entry at a time never makes a large write, so
// however long the window its appends are never held.
func TestALoneWriterIsNeverHeld(t *testing.T) {
	d := openDir(t, t.TempDir(), Options{Hold: time.Hour, HoldAfter: 2})
	s := mustGroup(t, d, "shard-1")
	done := make(chan error, 1)
	go func() {
		for i := uint64(1); i <= 50; i++ {
			if err := s.StoreLogs([]*raft.Log{entry(i, "v")}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("sequential appends were held: the committer waited for company after single writes")
	}
	wantEntries(t, s, 1, 50, func(uint64) string { return "v" })
}

// After a write large enough to mean the log is busy, a request that
// arrives well after the one being gathered still shares its write.
func TestAfterABusyWriteLateArrivalsShareTheNextSync(t *testing.T) {
	d := openDir(t, t.TempDir(), Options{Hold: time.Second, HoldAfter: 1})
	a, b := mustGroup(t, d, "shard-1"), mustGroup(t, d, "shard-2")
	if err := a.StoreLogs([]*raft.Log{entry(1, "first")}); err != nil {
		t.Fatal(err)
	}
	before := d.Stats()
	errs := make(chan error, 2)
	go func() { errs <- a.StoreLogs([]*raft.Log{entry(2, "early")}) }()
	time.Sleep(50 * time.Millisecond) // well inside the window, far outside a sync
	go func() { errs <- b.StoreLogs([]*raft.Log{entry(1, "late")}) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	after := d.Stats()
	if w, r := after.Writes-before.Writes, after.Requests-before.Requests; w != 1 || r != 2 {
		t.Fatalf("two appends 50 ms apart inside the hold took %d writes for %d requests, want 1 for 2", w, r)
	}
	wantEntries(t, a, 1, 2, func(i uint64) string { return map[uint64]string{1: "first", 2: "early"}[i] })
	wantEntries(t, b, 1, 1, func(uint64) string { return "late" })
}
