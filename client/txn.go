package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
	"unicode/utf8"
)

// Compare targets of a transaction (docs/transactions.md).
const (
	TargetValue    = "value"    // compare Value with the key's value
	TargetVersion  = "version"  // compare Number with the key's version (0: absent)
	TargetRevision = "revision" // compare Number with the key's mod revision (0: absent)
)

// TxnCompare is one condition of a transaction: the key's Target, Op
// ("==", "!=", "<" or ">") Value or Number.
type TxnCompare struct {
	Key    string
	Target string
	Op     string
	Value  []byte // with TargetValue
	Number uint64 // with TargetVersion and TargetRevision
}

// TxnOp is one operation of a transaction branch: Op is "put" (with
// Value), "delete" or "get".
type TxnOp struct {
	Op    string
	Key   string
	Value []byte
}

// Txn is an atomic compare / success / failure transaction over any keys,
// in one shard or across shards (POST /v1/txn).
type Txn struct {
	Compare []TxnCompare
	Success []TxnOp
	Failure []TxnOp
}

// TxnOpResult is the result of one op of the branch that ran.
type TxnOpResult struct {
	Op       string
	Key      string
	Found    bool
	Value    []byte
	Version  uint64
	Revision uint64
}

// TxnResult is the answer to a transaction that was decided.
type TxnResult struct {
	Succeeded bool // the compares held and Success ran
	Results   []TxnOpResult
	ID        string
	Mode      string   // "single" (one raft entry) or "2pc"
	Shards    []string // participants, primary first
	Node      string   // the node that coordinated it
	// Replayed is set when the answer is the remembered first answer of
	// the transaction's idempotency key.
	Replayed bool
}

// PutOp sets key to value.
func PutOp(key string, value []byte) TxnOp { return TxnOp{Op: "put", Key: key, Value: value} }

// GetOp reads key as it was before the transaction.
func GetOp(key string) TxnOp { return TxnOp{Op: "get", Key: key} }

// DeleteOp removes key.
func DeleteOp(key string) TxnOp { return TxnOp{Op: "delete", Key: key} }

// CompareValue holds when key's value is op value (as bytes); never on an
// absent key.
func CompareValue(key, op string, value []byte) TxnCompare {
	return TxnCompare{Key: key, Target: TargetValue, Op: op, Value: value}
}

// CompareVersion holds when key's version is op version.
func CompareVersion(key, op string, version uint64) TxnCompare {
	return TxnCompare{Key: key, Target: TargetVersion, Op: op, Number: version}
}

// CompareRevision holds when key's mod revision is op revision.
func CompareRevision(key, op string, revision uint64) TxnCompare {
	return TxnCompare{Key: key, Target: TargetRevision, Op: op, Number: revision}
}

// The wire form of docs/transactions.md.
type (
	txnCompareWire struct {
		Key         string  `json:"key"`
		Target      string  `json:"target"`
		Op          string  `json:"op"`
		Value       *string `json:"value,omitempty"`
		ValueBase64 string  `json:"value_base64,omitempty"`
		Version     *uint64 `json:"version,omitempty"`
		Revision    *uint64 `json:"revision,omitempty"`
	}
	txnOpWire struct {
		Op          string  `json:"op"`
		Key         string  `json:"key"`
		Value       *string `json:"value,omitempty"`
		ValueBase64 string  `json:"value_base64,omitempty"`
	}
	txnWire struct {
		Compare []txnCompareWire `json:"compare"`
		Success []txnOpWire      `json:"success"`
		Failure []txnOpWire      `json:"failure"`
	}
	txnAnswerWire struct {
		Succeeded bool `json:"succeeded"`
		Results   []struct {
			Op          string  `json:"op"`
			Key         string  `json:"key"`
			Found       bool    `json:"found"`
			Value       *string `json:"value"`
			ValueBase64 *string `json:"value_base64"`
			Version     uint64  `json:"version"`
			Revision    uint64  `json:"revision"`
		} `json:"results"`
		Txn struct {
			ID     string   `json:"id"`
			Mode   string   `json:"mode"`
			Shards []string `json:"shards"`
		} `json:"txn"`
	}
)

// wireValue spells v as text when it is UTF-8 and as base64 otherwise.
func wireValue(v []byte) (*string, string) {
	if utf8.Valid(v) {
		s := string(v)
		return &s, ""
	}
	return nil, base64.StdEncoding.EncodeToString(v)
}

func (t Txn) wire() (txnWire, error) {
	w := txnWire{Compare: []txnCompareWire{}, Success: []txnOpWire{}, Failure: []txnOpWire{}}
	for i, c := range t.Compare {
		cw := txnCompareWire{Key: c.Key, Target: c.Target, Op: c.Op}
		switch c.Target {
		case TargetValue:
			cw.Value, cw.ValueBase64 = wireValue(c.Value)
		case TargetVersion:
			cw.Version = &c.Number
		case TargetRevision:
			cw.Revision = &c.Number
		default:
			return w, fmt.Errorf("%w: compare %d: target %q: use value, version or revision", ErrBadRequest, i, c.Target)
		}
		w.Compare = append(w.Compare, cw)
	}
	for _, branch := range []struct {
		ops []TxnOp
		out *[]txnOpWire
	}{{t.Success, &w.Success}, {t.Failure, &w.Failure}} {
		for _, o := range branch.ops {
			ow := txnOpWire{Op: o.Op, Key: o.Key}
			if o.Op == "put" {
				if o.Value == nil {
					o.Value = []byte{}
				}
				ow.Value, ow.ValueBase64 = wireValue(o.Value)
			}
			*branch.out = append(*branch.out, ow)
		}
	}
	return w, nil
}

// primaryKey is the key whose shard holds a transaction's record (the
// first compare's, else the first op's): with leader routing the
// transaction goes to that shard's leader, which then coordinates it
// without a hop for its own shard.
func (w *txnWire) primaryKey() string {
	switch {
	case len(w.Compare) > 0:
		return w.Compare[0].Key
	case len(w.Success) > 0:
		return w.Success[0].Key
	case len(w.Failure) > 0:
		return w.Failure[0].Key
	}
	return ""
}

// writes reports whether the transaction has an op other than get in
// either branch. One that only reads changes nothing, so, like a Get, it is
// never indeterminate and may be sent to another endpoint after a
// transport failure.
func (w *txnWire) writes() bool {
	for _, branch := range [][]txnOpWire{w.Success, w.Failure} {
		for _, o := range branch {
			if o.Op != "get" {
				return true
			}
		}
	}
	return false
}

// Txn runs t. It returns once the transaction is decided; Succeeded says
// which branch ran. A transaction that writes is sent under an idempotency
// key (WithIdempotencyKey, or one the client makes) and resent while its
// outcome is unknown, so it commits at most once, cross-shard ones
// included; only when the retry budget or ctx runs out is the error
// ErrIndeterminate. The transaction id is not known then; read the keys,
// or resend with the same key (see docs/transactions.md). A transaction of
// gets only is a read: never indeterminate.
func (c *Client) Txn(ctx context.Context, t Txn, opts ...WriteOption) (TxnResult, error) {
	key, err := txnKey(opts)
	if err != nil {
		return TxnResult{}, err
	}
	w, err := t.wire()
	if err != nil {
		return TxnResult{}, err
	}
	body, err := json.Marshal(w)
	if err != nil {
		return TxnResult{}, err
	}
	resp, err := c.postTxn(ctx, body, w.primaryKey(), w.writes(), key)
	if err != nil {
		return TxnResult{}, err
	}
	var a txnAnswerWire
	if err := decodeJSON(resp, &a); err != nil {
		return TxnResult{}, err
	}
	res := TxnResult{Succeeded: a.Succeeded, ID: a.Txn.ID, Mode: a.Txn.Mode, Shards: a.Txn.Shards, Node: resp.node,
		Replayed: replayedAnswer(resp)}
	for _, r := range a.Results {
		or := TxnOpResult{Op: r.Op, Key: r.Key, Found: r.Found, Version: r.Version, Revision: r.Revision}
		switch {
		case r.ValueBase64 != nil:
			if or.Value, err = base64.StdEncoding.DecodeString(*r.ValueBase64); err != nil {
				return TxnResult{}, fmt.Errorf("raftkv: bad value_base64 for key %q: %w", r.Key, err)
			}
		case r.Value != nil:
			or.Value = []byte(*r.Value)
		}
		res.Results = append(res.Results, or)
	}
	return res, nil
}

// TxnJSON sends a transaction already spelt in the JSON of
// docs/transactions.md and returns the answer's body as the server sent
// it, for tools that pass JSON through (raftkv txn). body is not checked
// beyond finding its primary key for leader routing; the server reports
// what is wrong with it.
func (c *Client) TxnJSON(ctx context.Context, body []byte, opts ...WriteOption) (json.RawMessage, error) {
	key, err := txnKey(opts)
	if err != nil {
		return nil, err
	}
	var w txnWire
	write := true // a body of the wrong shape is routed anywhere, refused there, and counts as a write
	if json.Unmarshal(body, &w) == nil {
		write = w.writes()
	}
	resp, err := c.postTxn(ctx, body, w.primaryKey(), write, key)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(resp.body), nil
}

// txnKey takes a transaction's options: only WithIdempotencyKey applies.
func txnKey(opts []WriteOption) (string, error) {
	var wo writeOptions
	for _, opt := range opts {
		opt(&wo)
	}
	if wo.hasIfMatch || wo.ifAbsent {
		return "", fmt.Errorf("%w: IfMatch and IfAbsent do not apply to a transaction: compare in it", ErrBadRequest)
	}
	return wo.idemKey, nil
}

// postTxn sends a transaction; one that writes goes under an idempotency
// key (idemKey, or the client's own) and is resent while its outcome is
// unknown. A transaction of gets only is a read and goes without one.
func (c *Client) postTxn(ctx context.Context, body []byte, primary string, write bool, idemKey string) (*response, error) {
	// key routes the transaction; its answers name no shard
	// (X-Raftkv-Shard), so the router learns nothing wrong from them.
	r := request{method: http.MethodPost, path: "/v1/txn", body: body, write: write,
		header: http.Header{"Content-Type": {"application/json"}}, key: primary}
	if !write {
		return c.do(ctx, r) // gets only: a read, which needs no key
	}
	return c.doWrite(ctx, r, idemKey)
}

// States of a transaction record (TxnRecord.State).
const (
	TxnPending   = "pending"
	TxnCommitted = "committed"
	TxnAborted   = "aborted"
)

// TxnRecord is the record of a cross-shard transaction (GET /v1/txn/{id}),
// read linearizably from its primary shard.
type TxnRecord struct {
	ID string `json:"id"`
	// State is TxnPending, TxnCommitted or TxnAborted.
	State string `json:"state"`
	// Succeeded says which branch a committed transaction ran.
	Succeeded bool `json:"succeeded"`
	// Participants are the shards, the primary first.
	Participants []string  `json:"participants"`
	StartedAt    time.Time `json:"started_at"`
	// DecidedAt is zero while the record is pending.
	DecidedAt time.Time `json:"decided_at"`
	// Resolved is set once every participant has applied the decision.
	Resolved bool `json:"resolved"`
}

// TxnRecord returns the record of the cross-shard transaction id (the ID of
// a TxnResult). Unknown ids, ids of single-shard transactions and records
// past the cluster's retention (10 minutes after they resolved, by
// default) fail with ErrNotFound. A record that is still pending may yet
// be decided either way; recovery decides it within about the recovery
// timeout.
func (c *Client) TxnRecord(ctx context.Context, id string) (TxnRecord, error) {
	if id == "" {
		return TxnRecord{}, fmt.Errorf("%w: empty transaction id", ErrBadRequest)
	}
	var rec TxnRecord
	err := c.getJSON(ctx, "/v1/txn/"+url.PathEscape(id), &rec)
	return rec, err
}
