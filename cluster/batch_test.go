package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/rpc"
)

// fakeLeader answers batch calls like a leader would (each put's key comes
// back as its result), holding each call until release lets it go.
type fakeLeader struct {
	addr    string
	arrived chan int // the size of each batch call, as it arrives
	release chan struct{}
}

func startFakeLeader(t *testing.T) *fakeLeader {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLeader{addr: ln.Addr().String(), arrived: make(chan int, 100), release: make(chan struct{}, 100)}
	srv := rpc.Serve(ln, rpc.ServerConfig{NodeID: "leader", Code: Code, Handler: func(ctx context.Context, req rpc.Request) ([]byte, error) {
		reqs, err := decodeBatch(req.Args)
		if err != nil {
			return nil, err
		}
		f.arrived <- len(reqs)
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		results := make([]batchResult, len(reqs))
		for i, r := range reqs {
			var a putArgs
			if err := a.UnmarshalRPC(r.args); err != nil {
				return nil, err
			}
			if a.Key == "refuse" {
				results[i] = batchResult{code: Code(ErrPrecondition), msg: "refused"}
				continue
			}
			results[i] = batchResult{result: KVResult{KV: fsm.KV{Key: a.Key}, Shard: "shard-1"}.MarshalRPC()}
		}
		return encodeBatchResults(results), nil
	}})
	t.Cleanup(func() { srv.Close() })
	return f
}

func newTestBatcher(t *testing.T) *batcher {
	c := rpc.NewClient(rpc.ClientConfig{Dial: func(addr string, timeout time.Duration) (net.Conn, error) {
		return net.DialTimeout("tcp", addr, timeout)
	}})
	t.Cleanup(c.Close)
	return &batcher{c: c, lanes: map[laneKey]*lane{}}
}

func waitArrival(t *testing.T, f *fakeLeader) int {
	t.Helper()
	select {
	case n := <-f.arrived:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no batch call arrived")
		return 0
	}
}

// While the calls in flight are busy, requests wait and then go together in
// one call; each gets its own answer.
func TestRequestsThatWaitGoTogetherInOneCall(t *testing.T) {
	f := startFakeLeader(t)
	b := newTestBatcher(t)
	ctx := context.Background()
	type answer struct {
		key string
		res KVResult
		err error
	}
	answers := make(chan answer, 20)
	put := func(key string) {
		var res KVResult
		_, err := b.call(ctx, f.addr, "shard-1", "put", putArgs{Key: key}, &res)
		answers <- answer{key, res, err}
	}
	// Fill both slots.
	go put("a")
	go put("b")
	for range 2 {
		if n := waitArrival(t, f); n != 1 {
			t.Fatalf("one of the first two requests went with %d others", n-1)
		}
	}
	// Ten more queue behind them (one of which the leader refuses).
	for i := range 10 {
		key := fmt.Sprint("k", i)
		if i == 3 {
			key = "refuse"
		}
		go put(key)
	}
	waitQueued(t, b, f.addr, 10)
	f.release <- struct{}{} // answer "a" or "b": its slot goes to the queue
	if n := waitArrival(t, f); n != 10 {
		t.Fatalf("the next call carried %d requests, want the 10 that waited", n)
	}
	f.release <- struct{}{}
	f.release <- struct{}{}
	for range 12 {
		a := <-answers
		switch {
		case a.key == "refuse":
			if !errors.Is(a.err, ErrPrecondition) {
				t.Fatalf("the refused request: %v, want its own error", a.err)
			}
		case a.err != nil || a.res.KV.Key != a.key:
			t.Fatalf("request %s: result %+v, %v", a.key, a.res, a.err)
		}
	}
	if st := b.stats(); st.Calls != 3 || st.Requests != 12 {
		t.Fatalf("stats %+v, want 3 calls carrying 12 requests", st)
	}
	if len(b.lanes) != 0 {
		t.Fatalf("%d lanes left after every request was answered", len(b.lanes))
	}
}

// A request whose caller gives up while it waits is dropped, is reported
// as not sent, and the lane keeps working.
func TestARequestThatGivesUpWhileWaitingIsNotSent(t *testing.T) {
	f := startFakeLeader(t)
	b := newTestBatcher(t)
	done := make(chan error, 3)
	for _, k := range []string{"a", "b"} {
		go func() {
			_, err := b.call(context.Background(), f.addr, "shard-1", "put", putArgs{Key: k}, new(KVResult))
			done <- err
		}()
	}
	waitArrival(t, f)
	waitArrival(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, err := b.call(ctx, f.addr, "shard-1", "put", putArgs{Key: "late"}, new(KVResult))
		done <- err
	}()
	waitQueued(t, b, f.addr, 1)
	cancel()
	if err := <-done; !errors.Is(err, errDialFailed) {
		t.Fatalf("the request that gave up: %v, want it reported as not sent", err)
	}
	f.release <- struct{}{}
	f.release <- struct{}{}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Both slots are free again: a new request goes at once.
	go func() {
		_, err := b.call(context.Background(), f.addr, "shard-1", "put", putArgs{Key: "next"}, new(KVResult))
		done <- err
	}()
	if n := waitArrival(t, f); n != 1 {
		t.Fatalf("next call carried %d requests", n)
	}
	f.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitQueued polls until n requests wait in the lane to addr.
func waitQueued(t *testing.T, b *batcher, addr string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		l := b.lanes[laneKey{addr: addr, group: "shard-1"}]
		b.mu.Unlock()
		if l != nil {
			l.mu.Lock()
			k := len(l.waiting)
			l.mu.Unlock()
			if k == n {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d requests never waited in the lane", n)
}

// Two calls that come back at the same moment must not both hand their
// slot to the same waiting request: the second hand-off would wait,
// holding the lane, for a request that needs the lane to take its batch,
// and every request to that leader would hang from then on.
func TestCallsThatComeBackTogetherKeepTheLaneMoving(t *testing.T) {
	f := startFakeLeader(t)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a leader that answers the two calls in flight together
		for {
			for range 2 {
				select {
				case <-f.arrived:
				case <-time.After(time.Millisecond): // only one came
				case <-stop:
					return
				}
			}
			f.release <- struct{}{}
			f.release <- struct{}{}
		}
	}()
	b := newTestBatcher(t)
	const writers, each = 32, 200
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				key := fmt.Sprint("w", w, "-", i)
				var res KVResult
				if _, err := b.call(context.Background(), f.addr, "shard-1", "put", putArgs{Key: key}, &res); err != nil {
					errs <- err
					return
				}
				if res.KV.Key != key {
					errs <- fmt.Errorf("put %s answered for %s", key, res.KV.Key)
					return
				}
			}
			errs <- nil
		}()
	}
	deadline := time.After(60 * time.Second)
	for range writers {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatalf("requests stopped being answered: the lane is stuck (stats %+v)", b.stats())
		}
	}
	// Every slot came back: the idle lane left the map.
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, l := range b.lanes {
		l.mu.Lock()
		t.Errorf("lane %v still holds %d slots with nothing in flight", k, l.inFlight)
		l.mu.Unlock()
	}
}
