package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/keyspace"
	"github.com/raftkv/raftkv/registry"
)

// Consistency selects how a read is served.
type Consistency int

const (
	// Linearizable reads are served by the shard's leader after it confirms
	// its leadership with a quorum and has applied every committed write.
	Linearizable Consistency = iota
	// Stale reads come from this node's replica: fast, possibly behind.
	Stale
)

// KVResult is the outcome of a key operation.
type KVResult struct {
	KV      fsm.KV `json:"kv"`
	Found   bool   `json:"found"`
	Deleted bool   `json:"deleted"`
	Shard   string `json:"shard"`
	// Index is the shard's raft index the write committed at, or the one
	// the read's replica had applied when it read (the state it saw holds
	// every entry up to Index); Term the raft term then. Zero when unknown.
	Index uint64 `json:"index,omitempty"`
	Term  uint64 `json:"term,omitempty"`
	// Node is the id of the node that served the operation (set on return).
	Node string `json:"-"`
	// Replayed is set when the write's idempotency key was known: this is
	// its first result (Index, Term and revisions are the first write's;
	// KV carries no value) and nothing was applied now.
	Replayed bool `json:"replayed,omitempty"`
}

// ListResult is one page of a listing across every shard.
type ListResult struct {
	Items []fsm.KV
	More  bool
	// Indexes holds, per shard, an applied index the listing saw every
	// entry up to: the cursor of a blocking prefix query (docs/watch.md).
	Indexes map[string]uint64
}

// ShardFor returns the name of the shard that owns key (see keyspace.ShardFor).
func ShardFor(key string, shards int) string { return keyspace.ShardFor(key, shards) }

// ShardOf returns the shard of key in this cluster.
func (n *Node) ShardOf(key string) string { return ShardFor(key, n.shards) }

// ValidateKey checks the rules every key follows: 1..4096 bytes of UTF-8.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: key must not be empty", ErrBadRequest)
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("%w: key is %d bytes, the limit is %d", ErrBadRequest, len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key must be valid UTF-8", ErrBadRequest)
	}
	return nil
}

type putArgs struct {
	Key   string        `json:"key"`
	Value []byte        `json:"value"`
	Cond  fsm.Condition `json:"cond"`
	Once  *onceArgs     `json:"once,omitempty"` // an idempotency key (idempotency.go)
}

type keyArgs struct {
	Key  string        `json:"key"`
	Cond fsm.Condition `json:"cond"`
	Once *onceArgs     `json:"once,omitempty"` // delete only
}

type listArgs struct {
	Prefix string `json:"prefix"`
	After  string `json:"after"`
	Limit  int    `json:"limit"`
}

type listReply struct {
	Items []fsm.KV `json:"items"`
	More  bool     `json:"more"`
	// Index is the shard's applied index read before the listing (its
	// part of ListResult.Indexes); 0 from a node that predates it.
	Index uint64 `json:"index,omitempty"`
}

// Put writes value under key, subject to cond. It returns once the write is
// committed on a majority and applied.
func (n *Node) Put(ctx context.Context, key string, value []byte, cond fsm.Condition) (KVResult, error) {
	if err := ValidateKey(key); err != nil {
		return KVResult{}, err
	}
	if err := n.checkPutValue(ctx, key, value); err != nil {
		return KVResult{}, err
	}
	once, err := onceFor(ctx, fsm.EncodePut(key, value, cond))
	if err != nil {
		return KVResult{}, err
	}
	shard := n.ShardOf(key)
	res, served, err := route(ctx, n, shard, "put", putArgs{key, value, cond, once}, n.putLocal, once.routing())
	res.Node, res.Shard = served, shard
	return res, err
}

// Delete removes key, subject to cond. Deleted is false if it was absent.
func (n *Node) Delete(ctx context.Context, key string, cond fsm.Condition) (KVResult, error) {
	if err := ValidateKey(key); err != nil {
		return KVResult{}, err
	}
	if err := n.authorizeKeys(ctx, registry.AccessReadWrite, key); err != nil {
		return KVResult{}, err
	}
	once, err := onceFor(ctx, fsm.EncodeDelete(key, cond))
	if err != nil {
		return KVResult{}, err
	}
	shard := n.ShardOf(key)
	res, served, err := route(ctx, n, shard, "delete", keyArgs{Key: key, Cond: cond, Once: once}, n.deleteLocal, once.routing())
	res.Node, res.Shard = served, shard
	return res, err
}

// Get reads key. A missing key is ErrNotFound.
func (n *Node) Get(ctx context.Context, key string, c Consistency) (KVResult, error) {
	if err := ValidateKey(key); err != nil {
		return KVResult{}, err
	}
	if err := n.authorizeKeys(ctx, registry.AccessRead, key); err != nil {
		return KVResult{}, err
	}
	shard := n.ShardOf(key)
	var res KVResult
	var served string
	var err error
	if c == Stale {
		res, err = n.getFrom(n.groups[shard], key)
		served = n.cfg.NodeID
	} else {
		res, served, err = route(ctx, n, shard, "get", keyArgs{Key: key}, n.getLocal, idempotent)
	}
	res.Node, res.Shard = served, shard
	if err == nil && !res.Found {
		err = fmt.Errorf("%w: key %q", ErrNotFound, key)
	}
	return res, err
}

// List returns keys with prefix, after `after`, sorted, across every shard.
func (n *Node) List(ctx context.Context, prefix, after string, limit int, c Consistency) (ListResult, error) {
	type part struct {
		reply listReply
		err   error
	}
	gr, err := n.grantsOf(ctx)
	if err != nil {
		return ListResult{}, err
	}
	// Each shard returns its first `limit` keys; the first `limit` of their
	// union are the page, and any key left over means more follow.
	args := listArgs{Prefix: prefix, After: after, Limit: limit}
	if err := validateListArgs(args); err != nil {
		return ListResult{}, err
	}
	parts := make([]part, n.shards)
	n.onEveryShard(func(i int, g *group) {
		if c == Stale {
			parts[i].reply, parts[i].err = n.listFrom(g, args, gr)
			return
		}
		parts[i].reply, _, parts[i].err = route(ctx, n, g.name, "list", args, n.listLocal, idempotent)
	})
	out := ListResult{Indexes: make(map[string]uint64, n.shards)}
	for i, p := range parts {
		if p.err != nil {
			return ListResult{}, p.err
		}
		out.Indexes[fmt.Sprintf("shard-%d", i+1)] = p.reply.Index
		out.Items = append(out.Items, p.reply.Items...)
		out.More = out.More || p.reply.More
	}
	sort.Slice(out.Items, func(a, b int) bool { return out.Items[a].Key < out.Items[b].Key })
	if len(out.Items) > limit {
		out.Items, out.More = out.Items[:limit], true
	}
	return out, nil
}

// prefixArgs names the keys of a prefix delete.
type prefixArgs struct {
	Prefix string `json:"prefix"`
}

// deletedReply is one shard's part of a DeletePrefix.
type deletedReply struct {
	Deleted int `json:"deleted"`
}

// DeletePrefix deletes every key under prefix (every key when prefix is
// empty) and returns how many it deleted. Each shard's part is one raft
// entry, atomic on that shard; the shards are done in parallel, not as one
// transaction, so a reader can see some shards' keys gone and others' not
// yet, and a failure part-way leaves the shards that succeeded done
// (repeat it: it is idempotent). With auth on, the token needs readwrite on
// the whole prefix.
func (n *Node) DeletePrefix(ctx context.Context, prefix string) (int, error) {
	if err := validateListArgs(listArgs{Prefix: prefix, Limit: 1}); err != nil {
		return 0, err
	}
	if err := n.authorizeKeys(ctx, registry.AccessReadWrite, prefix); err != nil {
		return 0, err
	}
	parts := make([]deletedReply, n.shards)
	errs := make([]error, n.shards)
	n.onEveryShard(func(i int, g *group) {
		parts[i], _, errs[i] = route(ctx, n, g.name, "delete-prefix", prefixArgs{prefix}, n.deletePrefixLocal, idempotent)
	})
	total := 0
	for i := range parts {
		total += parts[i].Deleted
	}
	for _, err := range errs {
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (n *Node) deletePrefixLocal(ctx context.Context, g *group, a prefixArgs) (deletedReply, error) {
	if err := validateListArgs(listArgs{Prefix: a.Prefix, Limit: 1}); err != nil {
		return deletedReply{}, err
	}
	if err := n.authorizeKeys(ctx, registry.AccessReadWrite, a.Prefix); err != nil {
		return deletedReply{}, err
	}
	resp, err := n.applyUnlocked(ctx, g, fsm.EncodeDeletePrefix(a.Prefix))
	if err != nil {
		return deletedReply{}, err
	}
	r, ok := resp.(*fsm.Result)
	if !ok {
		return deletedReply{}, fmt.Errorf("unexpected apply response %T", resp)
	}
	if r.Err != nil {
		return deletedReply{}, fsmError("delete prefix", r.Err)
	}
	return deletedReply{Deleted: r.Count}, nil
}

// countReply is one shard's part of a Count.
type countReply struct {
	Count int `json:"count"`
}

// Count returns how many keys start with prefix across every shard, of
// those the caller may read. Each shard's count is consistent at one
// moment; the shards are counted at about the same time, not at one
// instant.
func (n *Node) Count(ctx context.Context, prefix string, c Consistency) (int, error) {
	gr, err := n.grantsOf(ctx)
	if err != nil {
		return 0, err
	}
	args := listArgs{Prefix: prefix, Limit: 1}
	if err := validateListArgs(args); err != nil {
		return 0, err
	}
	counts := make([]countReply, n.shards)
	errs := make([]error, n.shards)
	n.onEveryShard(func(i int, g *group) {
		if c == Stale {
			counts[i] = n.countFrom(g, prefix, gr)
			return
		}
		counts[i], _, errs[i] = route(ctx, n, g.name, "count", args, n.countLocal, idempotent)
	})
	total := 0
	for i := range counts {
		if errs[i] != nil {
			return 0, errs[i]
		}
		total += counts[i].Count
	}
	return total, nil
}

func (n *Node) countLocal(ctx context.Context, g *group, a listArgs) (countReply, error) {
	gr, err := n.readShard(ctx, g, a)
	if err != nil {
		return countReply{}, err
	}
	return n.countFrom(g, a.Prefix, gr), nil
}

// readShard prepares a linearizable scan of shard g on its leader: it
// checks the arguments, looks up what the caller may read, confirms the
// leadership and settles the transactions a read must see decided.
func (n *Node) readShard(ctx context.Context, g *group, a listArgs) (grants, error) {
	if err := validateListArgs(a); err != nil {
		return grants{}, err
	}
	gr, err := n.grantsOf(ctx)
	if err != nil {
		return grants{}, err
	}
	if err := g.readBarrier(ctx); err != nil {
		return grants{}, err
	}
	if err := n.settleShardForRead(ctx, g); err != nil {
		return grants{}, err
	}
	return gr, nil
}

// onEveryShard runs fn for every shard at once (i counts from 0) and
// waits for them all.
func (n *Node) onEveryShard(fn func(i int, g *group)) {
	var wg sync.WaitGroup
	for i := range n.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, n.groups[fmt.Sprintf("shard-%d", i+1)])
		}()
	}
	wg.Wait()
}

func (n *Node) countFrom(g *group, prefix string, gr grants) countReply {
	var keep func(string) bool
	if !gr.all && !gr.admin {
		keep = func(key string) bool { return gr.allows(key, registry.AccessRead) }
	}
	return countReply{Count: g.kv.Count(prefix, keep)}
}

// checkPutValue is what every put (with a lease or not) checks of its key
// and value on the node that takes it and again where it is applied: the
// caller may write the key, and the value is within the limit.
func (n *Node) checkPutValue(ctx context.Context, key string, value []byte) error {
	if err := n.authorizeKeys(ctx, registry.AccessReadWrite, key); err != nil {
		return err
	}
	if len(value) > n.cfg.MaxValueBytes {
		return fmt.Errorf("%w: value is %d bytes, the limit is %d", ErrTooLarge, len(value), n.cfg.MaxValueBytes)
	}
	return nil
}

func (n *Node) putLocal(ctx context.Context, g *group, a putArgs) (KVResult, error) {
	resp, err := n.applyPut(ctx, g, a.Key, a.Value, a.Cond, a.Once, func() []byte { return fsm.EncodePut(a.Key, a.Value, a.Cond) })
	if err != nil {
		return KVResult{}, err
	}
	return kvResult(resp)
}

// applyPut checks a put of key on g, the key's shard led here, and applies
// the entry encode makes (a put, or a put with a lease) under the
// idempotency key once. It returns the FSM's answer. encode runs only once
// the checks passed: the fsm's encoders refuse (panic on) a condition
// validCond would refuse.
func (n *Node) applyPut(ctx context.Context, g *group, key string, value []byte, cond fsm.Condition, once *onceArgs, encode func() []byte) (any, error) {
	if err := n.ownKey(g, key); err != nil {
		return nil, err
	}
	if err := validCond(cond); err != nil {
		return nil, err
	}
	if err := n.checkPutValue(ctx, key, value); err != nil {
		return nil, err
	}
	cmd, err := n.wrapOnce(once, encode())
	if err != nil {
		return nil, err
	}
	return n.applyUnlocked(ctx, g, cmd)
}

func (n *Node) deleteLocal(ctx context.Context, g *group, a keyArgs) (KVResult, error) {
	if err := n.ownKey(g, a.Key); err != nil {
		return KVResult{}, err
	}
	if err := validCond(a.Cond); err != nil {
		return KVResult{}, err
	}
	if err := n.authorizeKeys(ctx, registry.AccessReadWrite, a.Key); err != nil {
		return KVResult{}, err
	}
	cmd, err := n.wrapOnce(a.Once, fsm.EncodeDelete(a.Key, a.Cond))
	if err != nil {
		return KVResult{}, err
	}
	resp, err := n.applyUnlocked(ctx, g, cmd)
	if err != nil {
		return KVResult{}, err
	}
	return kvResult(resp)
}

// kvResult unwraps the FSM's answer with a checked type assertion.
func kvResult(resp interface{}) (KVResult, error) {
	r, ok := resp.(*fsm.Result)
	if !ok {
		return KVResult{}, fmt.Errorf("unexpected apply response %T", resp)
	}
	if err := refused(r); err != nil {
		return KVResult{}, err
	}
	switch {
	case r.Err == nil:
		return KVResult{KV: r.KV, Found: r.Found, Deleted: r.Deleted, Index: r.Index, Term: r.Term, Replayed: r.Replayed}, nil
	case errors.Is(r.Err, fsm.ErrPrecondition):
		return KVResult{}, &PreconditionError{Current: r.KV, Found: r.Found}
	case errors.Is(r.Err, fsm.ErrIdempotencyMismatch):
		return KVResult{}, reusedKey(r.Err)
	case errors.Is(r.Err, fsm.ErrLocked):
		return KVResult{}, fsmError("key locked by transaction "+r.LockedBy, r.Err)
	}
	// Anything else is not the client's condition failing: say what it was.
	return KVResult{}, fsmError("apply", r.Err)
}

func (n *Node) getLocal(ctx context.Context, g *group, a keyArgs) (KVResult, error) {
	if err := n.ownKey(g, a.Key); err != nil {
		return KVResult{}, err
	}
	if err := n.authorizeKeys(ctx, registry.AccessRead, a.Key); err != nil {
		return KVResult{}, err
	}
	if err := g.readBarrier(ctx); err != nil {
		return KVResult{}, err
	}
	if err := n.settleForRead(ctx, g, a.Key); err != nil {
		return KVResult{}, err
	}
	return n.getFrom(g, a.Key)
}

func (n *Node) getFrom(g *group, key string) (KVResult, error) {
	// Read before the key, so the state the read saw holds at least it.
	index, term := g.fsm.AppliedIndex(), g.raft.CurrentTerm()
	kv, ok := g.kv.Get(key)
	return KVResult{KV: kv, Found: ok, Index: index, Term: term}, nil
}

// WaitApplied waits until this node's replica of key's shard has applied
// index (a raft index of that shard, such as a write's KVResult.Index), so
// that a stale read from it next sees that write: reading your own writes
// on any node. It fails with ErrTimeout at ctx's deadline, saying how far
// the replica got.
func (n *Node) WaitApplied(ctx context.Context, key string, index uint64) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	g := n.groups[n.ShardOf(key)]
	if err := g.fsm.WaitApplied(ctx, index); err != nil {
		return fmt.Errorf("%w: %s here has applied up to index %d, not yet %d", ErrTimeout, g.name, g.fsm.AppliedIndex(), index)
	}
	return nil
}

func (n *Node) listLocal(ctx context.Context, g *group, a listArgs) (listReply, error) {
	gr, err := n.readShard(ctx, g, a)
	if err != nil {
		return listReply{}, err
	}
	return n.listFrom(g, a, gr)
}

// listFrom lists this replica's keys, keeping only those the caller may
// read: it reads on past unreadable keys until the page is full, so a page
// is never cut short while readable keys follow.
func (n *Node) listFrom(g *group, a listArgs, gr grants) (listReply, error) {
	// Read before the keys, so the listing holds at least every entry up
	// to index (as getFrom does).
	index := g.fsm.AppliedIndex()
	items, more := g.kv.List(a.Prefix, a.After, a.Limit)
	if gr.all || gr.admin {
		if items == nil {
			items = []fsm.KV{}
		}
		return listReply{Items: items, More: more, Index: index}, nil
	}
	out := []fsm.KV{}
	for {
		for _, kv := range items {
			if gr.allows(kv.Key, registry.AccessRead) && len(out) < a.Limit {
				out = append(out, kv)
			}
		}
		if len(out) >= a.Limit || !more || len(items) == 0 {
			return listReply{Items: out, More: more && len(out) >= a.Limit, Index: index}, nil
		}
		items, more = g.kv.List(a.Prefix, items[len(items)-1].Key, a.Limit)
	}
}
