package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// Exactly-once writes. A client names a logical write (PUT, DELETE, or a
// transaction) with an idempotency key; the node carries the key, scoped
// by the caller's token, and a hash of the request to the leader of the
// shard that owns the write, which proposes the write wrapped in an
// fsm.CommandIdempotent entry. The state machine applies it the first
// time and answers every retry with that first result
// (fsm/idempotency.go). A cross-shard transaction keeps its key on its
// primary shard: each attempt of the coordinator is decided by an
// fsm.CommandIdempotentDecide entry carrying the reply the client gets,
// and a second coordinator running the same request (a retry sent to
// another node) finds the key there and is aborted instead of committed.
//
// Since a keyed write cannot apply twice, routing retries it on the new
// leader after an indeterminate outcome (a leader change mid-write)
// instead of answering 504.
//
// Keys are remembered for Config.IdempotencyWindow by the shard leader's
// clock, and forgotten through the log (idempotencyLoop).

// MaxIdempotencyKeyBytes bounds a client's idempotency key.
const MaxIdempotencyKeyBytes = 255

// DefaultIdempotencyWindow is how long keys are remembered by default.
const DefaultIdempotencyWindow = 10 * time.Minute

// ErrIdempotencyKeyReused: the idempotency key was already used for a
// different request (another method, key, value, condition or body).
// Nothing changed. It is the fsm's sentinel, so the verdict reached at
// apply time matches.
var ErrIdempotencyKeyReused = fsm.ErrIdempotencyMismatch

type idemKeyCtx struct{}

// WithIdempotencyKey returns a context whose Put, Delete or Txn applies at
// most once per key (see ValidateIdempotencyKey for the rules).
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idemKeyCtx{}, key)
}

// IdempotencyKeyFrom returns the idempotency key WithIdempotencyKey put in ctx.
func IdempotencyKeyFrom(ctx context.Context) (string, bool) {
	k, ok := ctx.Value(idemKeyCtx{}).(string)
	return k, ok
}

// ValidateIdempotencyKey checks a client's key: 1..255 bytes of printable
// ASCII without spaces (what a header carries unchanged).
func ValidateIdempotencyKey(key string) error {
	if key == "" || len(key) > MaxIdempotencyKeyBytes {
		return fmt.Errorf("%w: an idempotency key is 1..%d bytes, not %d", ErrBadRequest, MaxIdempotencyKeyBytes, len(key))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return fmt.Errorf("%w: an idempotency key is printable ASCII without spaces; byte %d is %#x", ErrBadRequest, i, key[i])
		}
	}
	return nil
}

// onceArgs is what a keyed write carries to its shard's leader: the key
// as the state machine stores it (the caller's token id, a NUL, the
// client's key: one key names different writes for different tokens) and
// the request's hash.
type onceArgs struct {
	Key  string `json:"key"`
	Hash []byte `json:"hash"`
}

// onceFor returns the onceArgs of a write whose canonical encoding is
// request (an fsm entry of the whole request), or nil when ctx carries no
// idempotency key.
func onceFor(ctx context.Context, request []byte) (*onceArgs, error) {
	key, ok := IdempotencyKeyFrom(ctx)
	if !ok {
		return nil, nil
	}
	if err := ValidateIdempotencyKey(key); err != nil {
		return nil, err
	}
	h := sha256.Sum256(request)
	return &onceArgs{Key: callerOf(ctx) + "\x00" + key, Hash: h[:]}, nil
}

// check validates a onceArgs that arrived from another node.
func (o *onceArgs) check() error {
	if o == nil {
		return nil
	}
	if o.Key == "" || len(o.Key) > fsm.MaxIdempotencyKeyBytes || len(o.Hash) != fsm.IdempotencyHashBytes {
		return badRequest("idempotency key of %d bytes (1..%d) with a %d-byte hash (%d)",
			len(o.Key), fsm.MaxIdempotencyKeyBytes, len(o.Hash), fsm.IdempotencyHashBytes)
	}
	return nil
}

// routing returns how route may treat a write: a keyed one applies once,
// so it may be sent again after an indeterminate outcome.
func (o *onceArgs) routing() idempotency {
	if o != nil {
		return idempotent
	}
	return nonIdempotent
}

// wrapOnce returns cmd as this leader proposes it: once per key if o is
// set.
func (n *Node) wrapOnce(o *onceArgs, cmd []byte) ([]byte, error) {
	if o == nil {
		return cmd, nil
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	return fsm.EncodeIdempotent(o.Key, o.Hash, n.leaderNow(), cmd), nil
}

// reusedKey is the error of a key remembered for another request.
func reusedKey(err error) error {
	return fmt.Errorf("%w: the idempotency key was first used for a different request; use a new key for a new request", err)
}

// singleTxnID names a keyed single-shard transaction: the same id for
// every retry, derived from the key.
func singleTxnID(o *onceArgs) string {
	if o == nil {
		return "single." + randomID()
	}
	h := sha256.Sum256([]byte(o.Key))
	return "single." + hex.EncodeToString(h[:8])
}

// --- cross-shard transactions ---

// The operations of keyed cross-shard transactions on the node-to-node
// wire; a leader from before idempotency keys answers "unknown operation"
// (bad request) instead of ignoring the key. Never change these names.
const (
	opTxnOnce       = "txn-once"
	opTxnDecideOnce = "txn-decide-once"
)

// decideOnceArgs decides one attempt of a keyed cross-shard transaction:
// Reply is what the client gets, remembered under Once if the attempt
// commits.
type decideOnceArgs struct {
	Decide decideArgs `json:"decide"`
	Once   onceArgs   `json:"once"`
	Reply  []byte     `json:"reply"`
}

// onceDecided is the answer to a keyed decide: the attempt's record, and,
// when the key was already remembered (the attempt was aborted for it),
// either the remembered reply (Replayed) or Reused for another request.
type onceDecided struct {
	Record   fsm.Record `json:"record"`
	Replayed bool       `json:"replayed"`
	Reused   bool       `json:"reused"`
	Reply    []byte     `json:"reply"`
}

// rememberedReply is what a primary remembers under a key.
type rememberedReply struct {
	Found bool   `json:"found"`
	Hash  []byte `json:"hash"`
	Reply []byte `json:"reply"` // a cross-shard transaction's; empty for others
}

func (n *Node) decideOnceLocal(ctx context.Context, g *group, a decideOnceArgs) (onceDecided, error) {
	if err := n.validateDecide(g, a.Decide); err != nil {
		return onceDecided{}, err
	}
	if err := a.Once.check(); err != nil {
		return onceDecided{}, err
	}
	now := n.leaderNow()
	decide := fsm.EncodeTxn(fsm.CommandTxnDecide,
		fsm.TxnCmd{ID: a.Decide.ID, Outcome: a.Decide.Outcome, Participants: a.Decide.Participants, Now: now})
	resp, err := g.apply(ctx, fsm.EncodeIdempotentDecide(a.Once.Key, a.Once.Hash, now, a.Reply, decide))
	if err != nil {
		return onceDecided{}, err
	}
	return decidedOnce(a.Decide.ID, resp)
}

// decidedOnce turns a keyed decide entry's result into its answer.
func decidedOnce(id string, resp any) (onceDecided, error) {
	r, err := txnResult(resp)
	if err != nil {
		return onceDecided{}, err
	}
	if err := refused(r); err != nil {
		return onceDecided{}, err
	}
	if r.Txn == nil || r.Txn.Record == nil {
		return onceDecided{}, fmt.Errorf("%w: decide %s: %v", ErrConflict, id, r.Err)
	}
	out := onceDecided{Record: *r.Txn.Record, Replayed: r.Replayed, Reply: r.Reply}
	if errors.Is(r.Err, fsm.ErrIdempotencyMismatch) {
		out.Reused = true
	}
	return out, nil
}

func rememberedFrom(f *fsm.FSM, key string) rememberedReply {
	m, ok := f.Remembered(key)
	if !ok {
		return rememberedReply{}
	}
	return rememberedReply{Found: true, Hash: m.Hash, Reply: m.Result.Reply}
}

func (n *Node) decideOnceOn(ctx context.Context, primary string, a decideOnceArgs) (onceDecided, error) {
	r, _, err := route(ctx, n, primary, opTxnDecideOnce, a, n.decideOnceLocal, idempotent)
	return r, err
}

// rememberedOn reads this node's own replica of primary: the lookup is a
// shortcut, not what makes the request commit once (the keyed decide is),
// so a replica that lags only costs an attempt that the decide then
// aborts, and a key it does hold was committed.
func (n *Node) rememberedOn(_ context.Context, primary string, o onceArgs) (rememberedReply, error) {
	g, ok := n.groups[primary]
	if !ok || g.kv == nil {
		return rememberedReply{}, fmt.Errorf("%w: group %q", ErrNotFound, primary)
	}
	return rememberedFrom(g.kv, o.Key), nil
}

// txnReplyVersion opens the encoding of a remembered cross-shard reply.
const txnReplyVersion = 1

// encodeTxnReply is the reply a keyed cross-shard transaction remembers:
// a version byte, then the response as JSON.
func encodeTxnReply(res TxnResponse) ([]byte, error) {
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	return append([]byte{txnReplyVersion}, b...), nil
}

func decodeTxnReply(b []byte) (TxnResponse, error) {
	var res TxnResponse
	if len(b) < 1 || b[0] != txnReplyVersion {
		return res, fmt.Errorf("remembered transaction reply of an unknown version")
	}
	if err := json.Unmarshal(b[1:], &res); err != nil {
		return res, fmt.Errorf("remembered transaction reply: %w", err)
	}
	res.Replayed = true
	return res, nil
}

// replayed answers a keyed cross-shard transaction from what its primary
// remembers, if anything: the first reply, or ErrIdempotencyKeyReused.
func replayed(rem rememberedReply, o *onceArgs) (TxnResponse, bool, error) {
	switch {
	case !rem.Found:
		return TxnResponse{}, false, nil
	case string(rem.Hash) != string(o.Hash) || len(rem.Reply) == 0:
		return TxnResponse{}, true, reusedKey(ErrIdempotencyKeyReused)
	}
	res, err := decodeTxnReply(rem.Reply)
	return res, true, err
}

// --- forgetting keys ---

// idemTimes dates one shard's idempotency table on this node, the way
// txn_clock.go dates transaction state: a leader reads only stamps it
// wrote itself in its current term against its own clock. Until it has
// led the shard for the window, the GC cutoff stays at or below the oldest
// stamp it took over (floor), so a key is never forgotten before some
// leader's clock has seen it kept for the window.
type idemTimes struct {
	mu    sync.Mutex
	term  uint64
	since time.Time
	floor int64
}

// idempotencyState is the node's per-shard idemTimes (made in New).
type idempotencyState struct {
	mu     sync.Mutex
	shards map[string]*idemTimes
}

func (s *idempotencyState) of(group string) *idemTimes {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shards == nil {
		s.shards = map[string]*idemTimes{}
	}
	t := s.shards[group]
	if t == nil {
		t = &idemTimes{}
		s.shards[group] = t
	}
	return t
}

func (n *Node) idempotencyWindow() time.Duration {
	if n.cfg.IdempotencyWindow > 0 {
		return n.cfg.IdempotencyWindow
	}
	return DefaultIdempotencyWindow
}

// idempotencyGCInterval is how often a shard leader looks for keys to
// forget: a twentieth of the window, between 1 s and 1 min.
func idempotencyGCInterval(window time.Duration) time.Duration {
	return min(max(window/20, time.Second), time.Minute)
}

// idempotencyLoop runs for the node's lifetime (started by Node.start):
// on every shard this node leads, it proposes a GC entry when the table
// holds keys older than the window.
func (n *Node) idempotencyLoop() {
	for {
		if !n.sleepOrStop(idempotencyGCInterval(n.idempotencyWindow())) {
			return
		}
		for _, name := range n.order {
			if g := n.groups[name]; g.kv != nil && g.isLeader() {
				if err := n.collectIdempotency(g); err != nil {
					n.logger.Debug("idempotency GC skipped", "group", g.name, "error", err)
				}
			}
		}
	}
}

// collectIdempotency forgets g's keys kept longer than the window, by this
// leader's clock; g must be led by this node.
func (n *Node) collectIdempotency(g *group) error {
	ctx, cancel := detached(n.stop, 10*time.Second)
	defer cancel()
	before, err := n.idempotencyCutoff(ctx, g)
	if err != nil {
		return err
	}
	if oldest := g.kv.Idempotency().Oldest; oldest == 0 || oldest >= before {
		return nil
	}
	_, err = g.apply(ctx, fsm.EncodeIdempotencyGC(n.leaderNow(), before))
	return err
}

// idempotencyCutoff returns the leader time before which g's keys may be
// forgotten. The first call in a term takes the shard over: after a read
// barrier, every key of earlier terms is in the table, and the oldest
// of them is the floor.
func (n *Node) idempotencyCutoff(ctx context.Context, g *group) (int64, error) {
	window := n.idempotencyWindow()
	t := n.idem.of(g.name)
	term := g.raft.CurrentTerm()
	t.mu.Lock()
	known := t.term == term
	since, floor := t.since, t.floor
	t.mu.Unlock()
	if !known {
		if err := g.readBarrier(ctx); err != nil {
			return 0, err
		}
		if g.raft.CurrentTerm() != term {
			return 0, errNotLeader
		}
		since, floor = n.clock.Now(), g.kv.Idempotency().Oldest
		t.mu.Lock()
		if t.term != term {
			t.term, t.since, t.floor = term, since, floor
		}
		since, floor = t.since, t.floor
		t.mu.Unlock()
	}
	return idempotencyCutoff(n.clock.Now(), since, floor, window), nil
}

// idempotencyCutoff is the GC cutoff at now (this leader's clock) for a
// leader that took the shard over at since, finding floor as the oldest
// stamp: now - window, but not above floor until it has led for a window.
func idempotencyCutoff(now, since time.Time, floor int64, window time.Duration) int64 {
	before := now.Add(-window).UnixNano()
	if floor != 0 && now.Sub(since) <= window {
		before = min(before, floor)
	}
	return before
}

// IdempotencySummary returns this node's replica view of a shard's
// idempotency table (how many keys, the oldest stamp), for status and
// tests.
func (n *Node) IdempotencySummary(shard string) (fsm.IdempotencySummary, bool) {
	g, ok := n.groups[shard]
	if !ok || g.kv == nil {
		return fsm.IdempotencySummary{}, false
	}
	return g.kv.Idempotency(), true
}
