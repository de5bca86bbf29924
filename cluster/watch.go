package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/registry"
)

// Watches (docs/watch.md): blocking queries and change streams, both
// served from this node's own replicas. Each shard's FSM keeps a bounded
// history of the key changes it applied (fsm/history.go); a watcher reads
// it from a position and sleeps on the FSM's applied-index channel, which
// Apply closes after every batch, so Apply never waits for a watcher and a
// slow watcher costs no memory beyond its one pending batch: it just falls
// behind in the history, and is told "compacted" if the history moves
// past it.

// ErrCompacted: the change history no longer reaches back to the
// position a watch asked for (a *fsm.CompactedError says how far it does).
var ErrCompacted = fsm.ErrCompacted

// watchCatchUp bounds how long a watch waits for this node's replicas to
// reach what the shards' leaders had committed when it started.
const watchCatchUp = 10 * time.Second

// watchRecheck is how often an idle watch looks at its caller's token.
const watchRecheck = 5 * time.Second

// Watch batch bounds: one message carries at most this many changes, or
// about this many bytes of them.
const (
	watchBatchChanges = 256
	watchBatchBytes   = 1 << 20
)

// Cursor is a watch's position in every shard, by shard name: it has read
// every change up to the shard's fsm.Pos. Its text form is
// "1:120,2:95.3": shard number, colon, position, in shard order.
type Cursor map[string]fsm.Pos

func (c Cursor) String() string {
	names := make([]string, 0, len(c))
	for name := range c {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return shardNumber(a) - shardNumber(b) })
	var sb strings.Builder
	for i, name := range names {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Itoa(shardNumber(name)))
		sb.WriteByte(':')
		sb.WriteString(c[name].String())
	}
	return sb.String()
}

// Clone returns an independent copy.
func (c Cursor) Clone() Cursor {
	out := make(Cursor, len(c))
	for k, v := range c {
		out[k] = v
	}
	return out
}

func shardNumber(name string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, "shard-"))
	return n
}

// ParseCursor reads a cursor for a cluster of the given number of shards.
// Every shard must be named once: a watch's position in a shard it does
// not know is not "from the start" but unknown.
func ParseCursor(s string, shards int) (Cursor, error) {
	c := Cursor{}
	for part := range strings.SplitSeq(s, ",") {
		num, pos, ok := strings.Cut(part, ":")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 1 || n > shards {
			return nil, badRequest("cursor %q: want shard:position for each of the %d shards, such as 1:120,2:95", s, shards)
		}
		p, err := fsm.ParsePos(pos)
		if err != nil {
			return nil, badRequest("cursor %q: %v", s, err)
		}
		name := fmt.Sprintf("shard-%d", n)
		if _, dup := c[name]; dup {
			return nil, badRequest("cursor %q names shard %d twice", s, n)
		}
		c[name] = p
	}
	if len(c) != shards {
		return nil, badRequest("cursor %q names %d of the %d shards; pass back the whole X-Raftkv-Cursor", s, len(c), shards)
	}
	return c, nil
}

// WaitKeyChange blocks until this node's replica of key's shard shows a
// change of key after revision after, or ctx ends (its error is
// returned). It may return early when the replica's history does not
// reach back to after (see fsm.FSM.Changed), never late.
func (n *Node) WaitKeyChange(ctx context.Context, key string, after uint64) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	// Refused before the wait: its timing would tell when the key changed.
	if err := n.authorizeKeys(ctx, registry.AccessRead, key); err != nil {
		return err
	}
	return waitChanged(ctx, n.groups[n.ShardOf(key)].kv, key, false, after)
}

// WaitPrefixChange is WaitKeyChange for any key under prefix, in any
// shard, after the shard's revision in after.
func (n *Node) WaitPrefixChange(ctx context.Context, prefix string, after map[string]uint64) error {
	if err := validateListArgs(listArgs{Prefix: prefix, Limit: 1}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, n.shards)
	var wg sync.WaitGroup
	for i := range n.shards {
		g := n.groups[fmt.Sprintf("shard-%d", i+1)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			done <- waitChanged(ctx, g.kv, prefix, true, after[g.name])
		}()
	}
	err := <-done // the first shard to see a change, or ctx's end
	cancel()
	wg.Wait()
	return err
}

func waitChanged(ctx context.Context, f *fsm.FSM, key string, prefix bool, after uint64) error {
	for {
		changed, applied := f.Changed(key, prefix, after)
		if changed {
			return nil
		}
		if err := f.WaitApplied(ctx, applied+1); err != nil {
			return err
		}
	}
}

// WatchBatch is one shard's next changes in a watch, in revision order,
// and the shard's position after them. A batch without changes moves the
// position only (the shard applied entries that changed nothing watched).
// Err ends the watch: a *fsm.CompactedError, or the caller's token no
// longer valid.
type WatchBatch struct {
	Shard   string
	Changes []fsm.Change
	Pos     fsm.Pos
	Err     error
}

// Watcher follows the changes under a prefix in every shard.
type Watcher struct {
	// Start is the cursor the watch began at.
	Start  Cursor
	ch     chan WatchBatch
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Batches delivers the shards' batches; each shard's in order.
func (w *Watcher) Batches() <-chan WatchBatch { return w.ch }

// Close stops the watch and waits for its goroutines.
func (w *Watcher) Close() {
	w.cancel()
	w.wg.Wait()
}

// Watch starts following the changes to keys under prefix that the
// caller may read, after from (nil: after what the shards' leaders had
// committed now). It first brings this node's replicas up to what each
// shard's leader has committed (a read index), so a watch started after a
// write sees the state with it, wherever it runs; after that it reads only
// the local replicas, and delivers a change once this node has applied
// it, which is never before it is committed.
func (n *Node) Watch(ctx context.Context, prefix string, from Cursor) (*Watcher, error) {
	if err := validateListArgs(listArgs{Prefix: prefix, Limit: 1}); err != nil {
		return nil, err
	}
	if _, err := n.grantsOf(ctx); err != nil {
		return nil, err
	}
	if from != nil && len(from) != n.shards {
		return nil, badRequest("a cursor names every one of the %d shards", n.shards)
	}
	start, err := n.catchUp(ctx, from)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &Watcher{Start: start, ch: make(chan WatchBatch, 4*n.shards), cancel: cancel}
	for name, pos := range start {
		g := n.groups[name]
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			n.followShard(wctx, g, prefix, pos, w.ch)
		}()
	}
	return w, nil
}

// catchUp waits, for every shard at once, until this replica has applied
// what the shard's leader had committed, and returns from, or the applied
// indexes then when from is nil.
func (n *Node) catchUp(ctx context.Context, from Cursor) (Cursor, error) {
	ctx, cancel := context.WithTimeout(ctx, watchCatchUp)
	defer cancel()
	start := make(Cursor, n.shards)
	errs := make([]error, n.shards)
	var mu sync.Mutex
	n.onEveryShard(func(i int, g *group) {
		idx, _, err := route(ctx, n, g.name, "read-index", struct{}{}, n.readIndexLocal, idempotent)
		if err == nil && g.fsm.WaitApplied(ctx, idx) != nil {
			err = fmt.Errorf("%w: %s here has applied up to index %d, not yet %d", ErrTimeout, g.name, g.fsm.AppliedIndex(), idx)
		}
		if err != nil {
			errs[i] = fmt.Errorf("watch: catching up with %s: %w", g.name, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if from != nil {
			start[g.name] = from[g.name]
		} else {
			start[g.name] = fsm.Pos{Rev: g.fsm.AppliedIndex()}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return start, nil
}

// followShard reads shard g's history from pos and sends it on out, in
// order, until ctx ends or the watch cannot go on.
func (n *Node) followShard(ctx context.Context, g *group, prefix string, pos fsm.Pos, out chan<- WatchBatch) {
	send := func(b WatchBatch) bool {
		select {
		case out <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	reported := pos
	for {
		page, err := g.kv.Changes(prefix, pos, watchBatchChanges, watchBatchBytes)
		if err != nil {
			send(WatchBatch{Shard: g.name, Pos: pos, Err: err})
			return
		}
		gr, err := n.grantsOf(ctx)
		if err != nil {
			send(WatchBatch{Shard: g.name, Pos: pos, Err: err})
			return
		}
		cs := page.Changes
		if len(cs) > 0 {
			pos = fsm.After(cs[len(cs)-1])
		}
		readable := cs[:0]
		for _, c := range cs {
			if gr.allows(c.KV.Key, registry.AccessRead) {
				readable = append(readable, c)
			}
		}
		through := page.Through
		if !page.More && (through > pos.Rev || (through == pos.Rev && pos.Part != 0)) {
			pos = fsm.Pos{Rev: through} // nothing more under prefix up to through
		}
		switch {
		case len(readable) > 0:
			if !send(WatchBatch{Shard: g.name, Changes: readable, Pos: pos}) {
				return
			}
			reported = pos
		case pos != reported:
			// Only progress: offer it, but never block on it, so an idle
			// watch on a busy shard does not queue one per entry applied.
			select {
			case out <- WatchBatch{Shard: g.name, Pos: pos}:
				reported = pos
			default:
			}
		}
		if page.More {
			continue
		}
		// Wake at the next entry, or after a while to look at the
		// caller's token again (it may be revoked while the shard is
		// quiet).
		wctx, cancel := context.WithTimeout(ctx, watchRecheck)
		_ = g.kv.WaitApplied(wctx, through+1)
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// ParseCursor reads a cursor of this cluster (see ParseCursor). With a
// single shard a bare position ("120", as in X-Raftkv-Index) is its cursor
// too.
func (n *Node) ParseCursor(s string) (Cursor, error) {
	if n.shards == 1 && !strings.Contains(s, ":") {
		p, err := fsm.ParsePos(s)
		if err != nil {
			return nil, badRequest("cursor %q: %v", s, err)
		}
		return Cursor{"shard-1": p}, nil
	}
	return ParseCursor(s, n.shards)
}
