package fsm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestWaitAppliedUnblocks(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.f.WaitApplied(ctx, 1); err != nil {
		t.Fatalf("already applied: %v", err)
	}
	done := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { done <- h.f.WaitApplied(ctx, 3) }()
	}
	h.put("b", "2")
	select {
	case err := <-done:
		t.Fatalf("WaitApplied(3) returned %v at index 2", err)
	default:
	}
	h.put("c", "3")
	for i := 0; i < 3; i++ {
		if err := <-done; err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
	}
	// A waiter must see the entry it waited for.
	if _, ok := h.f.Get("c"); !ok {
		t.Fatal("entry 3 not visible after WaitApplied(3)")
	}
}

func TestWaitAppliedHonoursContext(t *testing.T) {
	f := New("shard-1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := f.WaitApplied(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := f.WaitApplied(ctx2, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want Canceled", err)
	}
}

func TestWaitAppliedAfterRestore(t *testing.T) {
	src := populated(t, 10)
	f := New("shard-1")
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { done <- f.WaitApplied(ctx, 10) }()
	if err := restore(f, persist(t, src.f)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func keys(items []KV) []string {
	out := make([]string, len(items))
	for i, kv := range items {
		out[i] = kv.Key
	}
	return out
}

func TestListPaging(t *testing.T) {
	h := newHarness(t)
	for _, k := range []string{"a", "app/1", "app/2", "app/3", "app/4", "app/5", "apple", "b"} {
		h.put(k, k)
	}
	cases := []struct {
		prefix, after string
		limit         int
		want          string
		more          bool
	}{
		{"app/", "", 2, "[app/1 app/2]", true},
		{"app/", "app/2", 2, "[app/3 app/4]", true},
		{"app/", "app/4", 2, "[app/5]", false},
		{"app/", "app/3", 2, "[app/4 app/5]", false},
		{"app/", "app/5", 2, "[]", false},
		{"app/", "app/25", 0, "[app/3 app/4 app/5]", false},
		{"app/", "a", 10, "[app/1 app/2 app/3 app/4 app/5]", false}, // after before prefix
		{"app/", "b", 10, "[]", false},                              // after past prefix
		{"", "", 0, "[a app/1 app/2 app/3 app/4 app/5 apple b]", false},
		{"", "apple", 5, "[b]", false},
		{"app", "", 3, "[app/1 app/2 app/3]", true},
		{"zzz", "", 3, "[]", false},
	}
	for _, tc := range cases {
		items, more := h.f.List(tc.prefix, tc.after, tc.limit)
		if got := fmt.Sprint(keys(items)); got != tc.want || more != tc.more {
			t.Errorf("List(%q, %q, %d) = %s more=%v, want %s more=%v",
				tc.prefix, tc.after, tc.limit, got, more, tc.want, tc.more)
		}
	}
	// Walking page by page visits every key exactly once.
	var all []string
	for after, more := "", true; more; {
		var items []KV
		items, more = h.f.List("app", after, 2)
		all = append(all, keys(items)...)
		if len(items) > 0 {
			after = items[len(items)-1].Key
		}
	}
	if fmt.Sprint(all) != "[app/1 app/2 app/3 app/4 app/5 apple]" {
		t.Fatalf("paged walk: %v", all)
	}
}

// TestConcurrentReadsDuringApply runs readers, a snapshot writer and the
// applier at once; -race checks the locking, and each read must see a
// consistent key.
func TestConcurrentReadsDuringApply(t *testing.T) {
	h := newHarness(t)
	const writes = 3000
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if kv, ok := h.f.Get("k/1"); ok && string(kv.Value) != fmt.Sprint(kv.Version) {
					t.Errorf("torn read: %+v", kv)
					return
				}
				items, _ := h.f.List("k/", "", 5)
				for _, kv := range items {
					if string(kv.Value) != fmt.Sprint(kv.Version) {
						t.Errorf("torn list item: %+v", kv)
						return
					}
				}
				_ = h.f.Len()
				_ = h.f.AppliedIndex()
			}
		}()
	}
	version := map[string]int{}
	for i := 0; i < writes; i++ {
		k := fmt.Sprintf("k/%d", i%10)
		version[k]++
		h.put(k, fmt.Sprint(version[k]))
		if i%500 == 0 {
			persist(t, h.f) // Persist reads the clone while Apply continues next
		}
	}
	close(stop)
	wg.Wait()
}

// TestPersistConcurrentWithApply streams a checkpoint on another goroutine
// while writes continue, as raft does.
func TestPersistConcurrentWithApply(t *testing.T) {
	h := populated(t, 2000)
	want := dump(h.f)
	snap, _ := h.f.Snapshot()
	done := make(chan []byte)
	go func() {
		var sink memSink
		if err := snap.Persist(&sink); err != nil {
			t.Error(err)
		}
		done <- sink.Bytes()
	}()
	for i := 0; i < 2000; i++ {
		h.put(fmt.Sprintf("key/%04d", i), "overwritten")
	}
	g := New("shard-1")
	if err := restore(g, <-done); err != nil {
		t.Fatal(err)
	}
	if !sameKVs(dump(g), want) {
		t.Fatal("checkpoint saw writes made after Snapshot")
	}
}

func TestAPrefixDeleteIsAllOrNothingOnAShard(t *testing.T) {
	h := newHarness(t)
	for _, k := range []string{"a/1", "a/2", "a/3", "ab", "b/1"} {
		h.put(k, "v")
	}
	// A transaction holds a/2: nothing under a/ is deleted.
	if r := h.txn(CommandTxnPrepare, prepare("t1", "shard-1", 1000, Txn{Success: []Op{putOp("a/2", "new")}})); r.Err != nil {
		t.Fatalf("prepare: %+v", r)
	}
	if r := h.apply(EncodeDeletePrefix("a/")); !errors.Is(r.Err, ErrLocked) || r.LockedBy != "t1" || r.Count != 0 {
		t.Fatalf("delete a/ with a/2 locked: %+v", r)
	}
	if h.f.Len() != 5 {
		t.Fatalf("a refused prefix delete deleted keys: %d left of 5", h.f.Len())
	}
	h.txn(CommandTxnResolve, TxnCmd{ID: "t1", Outcome: OutcomeAborted, Now: 2000})
	if r := h.apply(EncodeDeletePrefix("a/")); r.Err != nil || r.Count != 3 || !r.Deleted {
		t.Fatalf("delete a/: %+v", r)
	}
	items, _ := h.f.List("", "", 0)
	if len(items) != 2 || items[0].Key != "ab" || items[1].Key != "b/1" {
		t.Fatalf("left after deleting a/: %v", items)
	}
	if r := h.apply(EncodeDeletePrefix("zzz")); r.Err != nil || r.Count != 0 || r.Deleted {
		t.Fatalf("delete of a prefix nothing has: %+v", r)
	}
	if r := h.apply(EncodeDeletePrefix("")); r.Count != 2 || h.f.Len() != 0 {
		t.Fatalf("delete everything: %+v, %d left", r, h.f.Len())
	}
	// A prefix delete with a condition is malformed, and changes nothing.
	h.put("c", "v")
	b := EncodeDeletePrefix("c")
	b[2] = byte(CondAbsent)
	if r := h.apply(b); !errors.Is(r.Err, ErrInvalid) || h.f.Len() != 1 {
		t.Fatalf("conditional prefix delete: %+v, %d keys", r, h.f.Len())
	}
}
