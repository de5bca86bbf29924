package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/rpc"
)

// Forwarded key operations travel in batches. Under load many requests a
// node does not lead are on their way to the same leader at once; each used
// to be its own call (a frame each way, a read and a write on both ends, a
// dispatch on the leader). Now at most batchInFlight calls per leader,
// group and caller are in flight, and requests that arrive meanwhile wait
// and go together in the next one, as a "batch" call the leader unpacks.
// Nothing waits for a timer: a request that finds a free slot is sent at
// once, so a lone client sees no delay.
//
// Each request keeps its own outcome, error and deadline. A batch call that
// is not sent fails each request as not sent (safe to retry); one that
// breaks after sending leaves each outcome unknown, as a single call would.

// batchInFlight bounds the batch calls in flight per lane.
const batchInFlight = 2

// maxBatchItems bounds the requests in one batch call.
const maxBatchItems = 256

// batchable lists the operations that are batched when forwarded.
var batchable = map[string]bool{"put": true, "delete": true, "get": true}

type laneKey struct{ addr, group, caller string }

// lane queues the requests for one leader, group and caller. It is in the
// batcher's map while in use, and leaves it when idle.
type lane struct {
	key      laneKey
	mu       sync.Mutex
	inFlight int          // batch calls sent and not yet answered
	waiting  []*batchItem // requests waiting for a slot
}

// batchItem is one forwarded request.
type batchItem struct {
	op       string
	args     []byte
	deadline time.Time // zero: none

	lead    chan struct{} // signalled when this request is to send the waiting batch
	leading bool          // lead was signalled (under the lane's mu)
	done    chan struct{} // closed once the outcome below is set

	node   string
	code   string
	msg    string
	result []byte
	err    error // the batch call's own failure
}

type batcher struct {
	c     *rpc.Client
	mu    sync.Mutex
	lanes map[laneKey]*lane

	calls, requests atomic.Uint64 // batch calls made, requests they carried
}

func (b *batcher) lane(k laneKey) *lane {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.lanes[k]
	if l == nil {
		l = &lane{key: k}
		b.lanes[k] = l
	}
	return l
}

// ForwardStats counts the batch calls that carried forwarded key requests.
type ForwardStats struct {
	// Calls is how many batch calls were made, Requests how many requests
	// they carried.
	Calls    uint64 `json:"calls"`
	Requests uint64 `json:"requests"`
}

func (b *batcher) stats() ForwardStats {
	return ForwardStats{Calls: b.calls.Load(), Requests: b.requests.Load()}
}

// call runs one batchable request through its lane and decodes its result
// into out, with the errors rpcClient.call would give.
func (b *batcher) call(ctx context.Context, addr, groupName, op string, args, out any) (string, error) {
	raw, err := rpc.Marshal(args)
	if err != nil {
		return "", err
	}
	it := &batchItem{op: op, args: raw, lead: make(chan struct{}, 1), done: make(chan struct{})}
	it.deadline, _ = ctx.Deadline()
	caller := callerOf(ctx)
	l := b.lane(laneKey{addr, groupName, caller})

	l.mu.Lock()
	if l.inFlight < batchInFlight {
		l.inFlight++
		l.mu.Unlock()
		b.send(l, addr, groupName, caller, []*batchItem{it})
	} else {
		l.waiting = append(l.waiting, it)
		l.mu.Unlock()
		select {
		case <-it.lead:
			b.send(l, addr, groupName, caller, l.take())
		case <-it.done:
		case <-ctx.Done():
			if l.withdraw(it) {
				return "", fmt.Errorf("%w: gave up waiting to forward: %v", errDialFailed, ctx.Err())
			}
			// Already in a batch, or picked to send one: see it through,
			// so the slot is handed on and the outcome is known.
			select {
			case <-it.lead:
				b.send(l, addr, groupName, caller, l.take())
			case <-it.done:
			}
		}
	}
	<-it.done
	return it.outcome(addr, out)
}

// take removes and returns the waiting requests (at most maxBatchItems).
func (l *lane) take() []*batchItem {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(len(l.waiting), maxBatchItems)
	batch := l.waiting[:n:n]
	l.waiting = append([]*batchItem(nil), l.waiting[n:]...)
	return batch
}

// nextLeader returns the first waiting request not already picked to send
// a batch, or nil. Two calls that come back together must pick different
// requests: a request picked twice would send one batch for two slots, and
// the other slot would never come back (l.mu must be held).
func (l *lane) nextLeader() *batchItem {
	for _, w := range l.waiting {
		if !w.leading {
			return w
		}
	}
	return nil
}

// withdraw removes it from the queue if it is still only waiting there,
// neither taken into a batch nor picked to send one.
func (l *lane) withdraw(it *batchItem) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if it.leading {
		return false
	}
	for i, w := range l.waiting {
		if w == it {
			l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
			return true
		}
	}
	return false
}

// send makes one batch call for items, answers each, then hands the slot
// to the first waiting request, if any.
func (b *batcher) send(l *lane, addr, groupName, caller string, items []*batchItem) {
	if len(items) > 0 {
		b.exchange(addr, groupName, caller, items)
	}
	l.mu.Lock()
	if next := l.nextLeader(); next != nil {
		next.leading = true
		next.lead <- struct{}{} // never blocks: each request is picked at most once
	} else {
		l.inFlight--
		if l.inFlight == 0 {
			// Idle: drop it from the map, so lanes of callers long gone do
			// not pile up. A request that found it just before still
			// works through it alone.
			b.mu.Lock()
			if b.lanes[l.key] == l {
				delete(b.lanes, l.key)
			}
			b.mu.Unlock()
		}
	}
	l.mu.Unlock()
}

func (b *batcher) exchange(addr, groupName, caller string, items []*batchItem) {
	var deadline time.Time
	for _, it := range items {
		if it.deadline.IsZero() {
			deadline = time.Time{}
			break
		}
		if it.deadline.After(deadline) {
			deadline = it.deadline
		}
	}
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	b.calls.Add(1)
	b.requests.Add(uint64(len(items)))
	resp, err := b.c.Call(ctx, addr, rpc.Request{Group: groupName, Op: "batch", Caller: caller, Args: encodeBatch(items)})
	var results []batchResult
	if err == nil {
		results, err = decodeBatchResults(resp.Result, len(items))
		if err != nil {
			err = fmt.Errorf("%w: bad reply from %s: %v", ErrIndeterminate, addr, err)
		}
	}
	for i, it := range items {
		if err != nil {
			it.err = err
		} else {
			it.node, it.code, it.msg, it.result = resp.Node, results[i].code, results[i].msg, results[i].result
		}
		close(it.done)
	}
}

// outcome turns an answered item into rpcClient.call's result and error.
func (it *batchItem) outcome(addr string, out any) (string, error) {
	var remote *rpc.RemoteError
	switch err := it.err; {
	case errors.As(err, &remote):
		return remote.Node, errorFromCode(remote.Code, remote.Message)
	case errors.Is(err, rpc.ErrNotSent):
		return "", fmt.Errorf("%w: %v", errDialFailed, err)
	case errors.Is(err, ErrIndeterminate):
		return "", err
	case err != nil:
		return "", fmt.Errorf("%w: calling %s: %v", ErrIndeterminate, addr, err)
	}
	if it.code != "" {
		return it.node, errorFromCode(it.code, it.msg)
	}
	if out != nil {
		if err := rpc.Unmarshal(it.result, out); err != nil {
			return it.node, fmt.Errorf("%w: bad reply from %s: %v", ErrIndeterminate, addr, err)
		}
	}
	return it.node, nil
}

// --- the leader's side ---

// batchLocal runs the requests of a batch call at once (so raft puts their
// entries in one append), each as serveRPC would run it alone, and answers
// each with its own result or error.
func (n *Node) batchLocal(ctx context.Context, groupName, caller string, raw []byte) ([]byte, error) {
	reqs, err := decodeBatch(raw)
	if err != nil {
		return nil, err
	}
	results := make([]batchResult, len(reqs))
	run := func(i int) {
		r := reqs[i]
		if !batchable[r.op] {
			results[i] = batchResult{code: Code(ErrBadRequest), msg: fmt.Sprintf("operation %q cannot be batched", r.op)}
			return
		}
		rctx := ctx
		if r.deadlineMillis > 0 {
			var cancel context.CancelFunc
			rctx, cancel = context.WithTimeout(ctx, time.Duration(r.deadlineMillis)*time.Millisecond)
			defer cancel()
		}
		res, err := n.serveRPC(rctx, rpc.Request{Group: groupName, Op: r.op, Caller: caller, Args: r.args})
		if err != nil {
			results[i] = batchResult{code: Code(err), msg: err.Error()}
			return
		}
		results[i] = batchResult{result: res}
	}
	if len(reqs) == 1 {
		// A lone request (the common case at light load) runs here: a
		// goroutine would only add a hand-off to its round trip.
		run(0)
		return encodeBatchResults(results), nil
	}
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() { run(i) })
	}
	wg.Wait()
	return encodeBatchResults(results), nil
}

// batchOp is the leader's side of a batch call, for the operation table.
func (n *Node) batchOp() opSpec {
	return opSpec{kind: shardGroup, leaderOnly: true, run: func(ctx context.Context, g *group, raw []byte) (any, error) {
		out, err := n.batchLocal(ctx, g.name, callerOf(ctx), raw)
		return encodedResult(out), err
	}}
}

// encodedResult is a result already encoded: it goes out as it is.
type encodedResult []byte

// MarshalRPC implements rpc.BinaryMarshaler.
func (r encodedResult) MarshalRPC() []byte { return r }

// --- encodings: after rpc.FastMarker and rpcLayout, a count, then per
// request [op][deadline ms][args] and per result [code][message][result] ---

type batchRequest struct {
	op             string
	deadlineMillis uint64
	args           []byte
}

type batchResult struct {
	code, msg string
	result    []byte
}

func encodeBatch(items []*batchItem) []byte {
	size := 0
	for _, it := range items {
		size += len(it.op) + len(it.args) + 16
	}
	b := beginRPC(size + binary.MaxVarintLen32)
	b = binary.AppendUvarint(b, uint64(len(items)))
	now := time.Now()
	for _, it := range items {
		b = wire.AppendText(b, it.op)
		var ms uint64
		if !it.deadline.IsZero() {
			ms = uint64(max(it.deadline.Sub(now).Milliseconds(), 1))
		}
		b = binary.AppendUvarint(b, ms)
		b = wire.AppendBytes(b, it.args)
	}
	return b
}

func decodeBatch(raw []byte) ([]batchRequest, error) {
	d, err := rpcDecoder(raw, "batch")
	if err != nil {
		return nil, err
	}
	n := d.Count(3)
	if n > maxBatchItems {
		return nil, fmt.Errorf("%w: batch of %d requests (limit %d)", ErrBadRequest, n, maxBatchItems)
	}
	reqs := make([]batchRequest, n)
	for i := range reqs {
		reqs[i] = batchRequest{op: d.Text(), deadlineMillis: d.Uvarint(), args: d.Bytes()}
	}
	if err := finishRPC(d, "batch"); err != nil {
		return nil, err
	}
	return reqs, nil
}

func encodeBatchResults(results []batchResult) []byte {
	size := 0
	for _, r := range results {
		size += len(r.code) + len(r.msg) + len(r.result) + 12
	}
	b := beginRPC(size + binary.MaxVarintLen32)
	b = binary.AppendUvarint(b, uint64(len(results)))
	for _, r := range results {
		b = wire.AppendText(b, r.code)
		b = wire.AppendText(b, r.msg)
		b = wire.AppendBytes(b, r.result)
	}
	return b
}

func decodeBatchResults(raw []byte, want int) ([]batchResult, error) {
	d, err := rpcDecoder(raw, "batch results")
	if err != nil {
		return nil, err
	}
	n := d.Count(3)
	if d.Err() == nil && n != want {
		return nil, fmt.Errorf("%d results for %d requests", n, want)
	}
	results := make([]batchResult, n)
	for i := range results {
		results[i] = batchResult{code: d.Text(), msg: d.Text(), result: d.Bytes()}
	}
	if err := finishRPC(d, "batch results"); err != nil {
		return nil, err
	}
	return results, nil
}
