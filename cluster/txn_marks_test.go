package cluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// markRecorder is a participants whose only call, markResolvedOn, records
// what it was asked to mark.
type markRecorder struct {
	participants // nil: any other call panics

	mu     sync.Mutex
	marked []string // primary/id
}

func (r *markRecorder) markResolvedOn(_ context.Context, primary, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.marked = append(r.marked, primary+"/"+id)
	return nil
}

// took returns the marks sent so far, sorted.
func (r *markRecorder) took() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.marked)
	slices.Sort(out)
	return out
}

// TestMarksAreGatheredAndSentTogether: marks that arrive within one
// gathering window are sent together when it ends, one sender runs at a
// time and leaves after a window that brought none, and marks still
// waiting when the node stops are left to recovery.
func TestMarksAreGatheredAndSentTogether(t *testing.T) {
	rec := &markRecorder{}
	stop := make(chan struct{})
	var senders sync.WaitGroup
	started := 0
	c := &coordinator{shards: rec, logger: hclog.NewNullLogger(), stop: stop,
		spawn: func(f func()) {
			started++
			senders.Add(1)
			go func() {
				defer senders.Done()
				f()
			}()
		}}
	opened, ends := make(chan struct{}), make(chan bool)
	c.marks.window = func(<-chan struct{}) bool {
		opened <- struct{}{}
		return <-ends
	}
	windowOpens := func() {
		t.Helper()
		select {
		case <-opened:
		case <-time.After(10 * time.Second):
			t.Fatal("the sender never opened a gathering window")
		}
	}
	want := func(marks ...string) {
		t.Helper()
		if got := rec.took(); !slices.Equal(got, marks) {
			t.Fatalf("marked %v, want %v", got, marks)
		}
	}

	c.marks.add(c, "shard-1", "t1")
	windowOpens()
	c.marks.add(c, "shard-1", "t2")
	c.marks.add(c, "shard-2", "t3")
	want() // nothing is sent while the window is open
	ends <- true
	windowOpens() // the sender opens the next window only once the batch is marked
	want("shard-1/t1", "shard-1/t2", "shard-2/t3")

	c.marks.add(c, "shard-1", "t4")
	ends <- true
	windowOpens()
	want("shard-1/t1", "shard-1/t2", "shard-1/t4", "shard-2/t3")
	ends <- true // a window with no marks: the sender leaves
	senders.Wait()
	if started != 1 {
		t.Fatalf("%d senders started for marks that kept coming, want 1", started)
	}

	c.marks.add(c, "shard-1", "t5") // a new sender
	windowOpens()
	close(stop)
	ends <- false // the node stopped during the window
	senders.Wait()
	if started != 2 {
		t.Fatalf("%d senders started, want 2", started)
	}
	want("shard-1/t1", "shard-1/t2", "shard-1/t4", "shard-2/t3") // t5 is recovery's
}
