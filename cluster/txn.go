package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/raftkv/raftkv/fsm"
)

// TxnRequest is a transaction: if every compare holds, the success ops run,
// else the failure ops. Compares, reads and writes may touch any shards.
type TxnRequest struct {
	Compares []fsm.Compare
	Success  []fsm.Op
	Failure  []fsm.Op
}

func (r TxnRequest) body() fsm.Txn {
	return fsm.Txn{Compares: r.Compares, Success: r.Success, Failure: r.Failure}
}

// TxnOpResult is the result of one op of the branch that ran. For a get,
// KV is the key before the transaction; for a put, the key as written
// (revision and version are 0 in a cross-shard transaction, where the write
// lands at resolve time); for a delete, the key that was removed.
type TxnOpResult struct {
	Op    fsm.OpKind
	Key   string
	Found bool
	KV    fsm.KV
}

// TxnResponse is the outcome of a committed transaction.
type TxnResponse struct {
	Succeeded bool
	Results   []TxnOpResult
	ID        string
	Mode      string   // "single" or "2pc"
	Shards    []string // participants, primary first
	// Replayed is set when the idempotency key was known: this is the
	// request's first response, and nothing was applied now.
	Replayed bool `json:"-"`
}

// Transaction modes.
const (
	ModeSingle = "single"
	Mode2PC    = "2pc"
)

// opRef locates a request op inside its shard's part.
type opRef struct {
	shard string
	index int // position in the part's Success (or Failure) list
}

// txnPlan is a request split by shard.
type txnPlan struct {
	shards  []string // primary first, then the others sorted
	parts   map[string]*fsm.Txn
	success []opRef
	failure []opRef
}

// Txn runs a transaction. A transaction inside one shard is one raft entry;
// one spanning shards runs two-phase commit with the record on the shard of
// its first key (see docs/transactions.md). A 200-equivalent return means
// the decision is committed in raft.
func (n *Node) Txn(ctx context.Context, req TxnRequest) (TxnResponse, error) {
	if err := n.validateTxn(req); err != nil {
		return TxnResponse{}, err
	}
	if err := n.authorizeTxn(ctx, req.body()); err != nil {
		return TxnResponse{}, err
	}
	once, err := onceFor(ctx, fsm.EncodeTxn(fsm.CommandTxn, fsm.TxnCmd{Body: req.body()}))
	if err != nil {
		return TxnResponse{}, err
	}
	plan := planTxn(req, n.ShardOf)
	if len(plan.shards) == 1 {
		return n.txnSingle(ctx, plan.shards[0], req, once)
	}
	return n.coord.run(ctx, req, plan, once)
}

// validateTxn applies the limits and input rules before anything is
// proposed.
func (n *Node) validateTxn(req TxnRequest) error {
	cfg := n.txnConfig()
	ops := len(req.Compares) + len(req.Success) + len(req.Failure)
	switch {
	case ops == 0:
		return fmt.Errorf("%w: a transaction needs at least one compare or op", ErrBadRequest)
	case ops > cfg.MaxOps:
		return fmt.Errorf("%w: %d compares and ops, the limit is %d", ErrBadRequest, ops, cfg.MaxOps)
	}
	size := 0
	for _, c := range req.Compares {
		if err := ValidateKey(c.Key); err != nil {
			return err
		}
		if c.Target < fsm.TargetValue || c.Target > fsm.TargetRevision || c.Op < fsm.OpEqual || c.Op > fsm.OpGreater {
			return fmt.Errorf("%w: compare on %q: unknown target or operator", ErrBadRequest, c.Key)
		}
		size += len(c.Key) + len(c.Value)
	}
	for _, branch := range [][]fsm.Op{req.Success, req.Failure} {
		written := map[string]bool{}
		for _, o := range branch {
			if err := ValidateKey(o.Key); err != nil {
				return err
			}
			switch o.Kind {
			case fsm.OpGet:
			case fsm.OpPut, fsm.OpDelete:
				if written[o.Key] {
					return fmt.Errorf("%w: key %q is written twice in one branch", ErrBadRequest, o.Key)
				}
				written[o.Key] = true
			default:
				return fmt.Errorf("%w: op on %q: unknown kind", ErrBadRequest, o.Key)
			}
			if len(o.Value) > n.cfg.MaxValueBytes {
				return fmt.Errorf("%w: value of %q is %d bytes, the limit is %d", ErrTooLarge, o.Key, len(o.Value), n.cfg.MaxValueBytes)
			}
			size += len(o.Key) + len(o.Value)
		}
	}
	if size > cfg.MaxBytes {
		return fmt.Errorf("%w: transaction holds %d bytes of keys and values, the limit is %d", ErrTooLarge, size, cfg.MaxBytes)
	}
	return nil
}

// planTxn splits req by shard (shardOf names a key's). The primary is the
// shard of the first key (first compare, else first success op, else
// first failure op).
func planTxn(req TxnRequest, shardOf func(key string) string) txnPlan {
	p := txnPlan{parts: map[string]*fsm.Txn{}}
	part := func(key string) (string, *fsm.Txn) {
		s := shardOf(key)
		if p.parts[s] == nil {
			p.parts[s] = &fsm.Txn{}
			p.shards = append(p.shards, s)
		}
		return s, p.parts[s]
	}
	for _, c := range req.Compares {
		_, t := part(c.Key)
		t.Compares = append(t.Compares, c)
	}
	for _, o := range req.Success {
		s, t := part(o.Key)
		p.success = append(p.success, opRef{s, len(t.Success)})
		t.Success = append(t.Success, o)
	}
	for _, o := range req.Failure {
		s, t := part(o.Key)
		p.failure = append(p.failure, opRef{s, len(t.Failure)})
		t.Failure = append(t.Failure, o)
	}
	slices.Sort(p.shards[1:])
	return p
}

// txnSingle runs a transaction inside one shard as one raft entry.
func (n *Node) txnSingle(ctx context.Context, shard string, req TxnRequest, once *onceArgs) (TxnResponse, error) {
	op := opTxn
	if once != nil {
		op = opTxnOnce
	}
	reply, _, err := route(ctx, n, shard, op, txnArgs{Body: req.body(), Once: once}, n.txnLocal, once.routing())
	if err != nil {
		return TxnResponse{}, err
	}
	ops := req.Failure
	if reply.Succeeded {
		ops = req.Success
	}
	if len(reply.Results) != len(ops) {
		return TxnResponse{}, fmt.Errorf("transaction returned %d results for %d ops", len(reply.Results), len(ops))
	}
	out := TxnResponse{Succeeded: reply.Succeeded, ID: singleTxnID(once), Mode: ModeSingle, Shards: []string{shard}, Replayed: reply.Replayed}
	for i, o := range ops {
		out.Results = append(out.Results, TxnOpResult{Op: o.Kind, Key: o.Key, Found: reply.Results[i].Found, KV: reply.Results[i].KV})
	}
	return out, nil
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newTxnID returns an id that names its primary shard: "<primary>.<random>".
func newTxnID(primary string) string { return primary + "." + randomID() }

// primaryOf returns the primary shard named in a transaction id.
func (n *Node) primaryOf(id string) (string, bool) {
	primary, _, ok := strings.Cut(id, ".")
	if !ok {
		return "", false
	}
	g, ok := n.groups[primary]
	return primary, ok && g.kv != nil
}

// TxnRecord returns the record of a cross-shard transaction, read
// linearizably from its primary shard. Unknown ids, single-shard ids and
// garbage-collected records are ErrNotFound.
func (n *Node) TxnRecord(ctx context.Context, id string) (fsm.Record, error) {
	primary, ok := n.primaryOf(id)
	if !ok {
		return fsm.Record{}, fmt.Errorf("%w: transaction %q", ErrNotFound, id)
	}
	rec, err := n.recordOn(ctx, primary, id)
	if err != nil {
		return fsm.Record{}, err
	}
	if !rec.Found {
		return fsm.Record{}, fmt.Errorf("%w: transaction %q", ErrNotFound, id)
	}
	return rec.Record, nil
}

// TxnSummary returns this node's replica view of a shard's transaction
// state (staged parts, records, lock count), for status and tests.
func (n *Node) TxnSummary(shard string) (fsm.TxnSummary, bool) {
	g, ok := n.groups[shard]
	if !ok || g.kv == nil {
		return fsm.TxnSummary{}, false
	}
	return g.kv.Transactions(), true
}

// TxnRecoveryRuns returns how many recovery passes this node has made over
// a shard as its leader (txn_recovery.go), for status and tests.
func (n *Node) TxnRecoveryRuns(shard string) uint64 {
	g, ok := n.groups[shard]
	if !ok || g.kv == nil {
		return 0
	}
	return g.txnRecoveryRuns.Load()
}
