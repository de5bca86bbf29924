package client

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// PutResult is the answer to a successful Put.
type PutResult struct {
	Key      string `json:"key"`
	Revision uint64 `json:"revision"` // the key's mod revision (raft index in its shard)
	Version  uint64 `json:"version"`  // writes since the key was created
	Shard    string `json:"shard"`    // e.g. "shard-2"
	Node     string `json:"-"`        // node that served the request
	// Replayed is set when the answer is the remembered first answer of
	// the write's idempotency key (a resend of a write already applied).
	Replayed bool `json:"-"`
}

// Value is a key's value with its metadata, as returned by Get.
type Value struct {
	Key      string
	Value    []byte
	Revision uint64 // the key's mod revision
	// CreateRevision is the revision of the write that (re)created the key.
	CreateRevision uint64
	Version        uint64
	Shard          string
	Node           string // node that served the request
	// Index is the shard's raft index the read saw every entry up to
	// (X-Raftkv-Index): pass it to WaitIndex to wait for the next change.
	Index uint64
	// Lease is the id of the lease the key is attached to
	// (X-Raftkv-Lease), or empty.
	Lease string
}

// KV is one item of a List answer.
type KV struct {
	Key            string
	Value          []byte
	Revision       uint64
	CreateRevision uint64
	Version        uint64
}

// ListResult is one page of a List answer.
type ListResult struct {
	Items []KV
	// More is true when further keys match; continue with after set to the
	// last key of Items.
	More bool
	// Cursor is where the listing stands in every shard (X-Raftkv-Cursor):
	// pass it to WaitCursor to wait for the next change under the prefix,
	// or to WatchFrom to stream the changes after it.
	Cursor string
}

// WriteOption sets a condition on Put or Delete.
type WriteOption func(*writeOptions)

type writeOptions struct {
	ifMatch    uint64
	hasIfMatch bool
	ifAbsent   bool
	idemKey    string // WithIdempotencyKey
	lease      string // WithLease (Put only)
}

// IfMatch makes the write happen only if the key's current revision is rev;
// otherwise the call fails with ErrPrecondition.
func IfMatch(rev uint64) WriteOption {
	return func(o *writeOptions) { o.ifMatch, o.hasIfMatch = rev, true }
}

// IfAbsent makes a Put create the key only if it does not exist; otherwise
// the call fails with ErrPrecondition. Not valid for Delete.
func IfAbsent() WriteOption { return func(o *writeOptions) { o.ifAbsent = true } }

func (o *writeOptions) header() http.Header {
	h := http.Header{}
	if o.hasIfMatch {
		h.Set("If-Match", strconv.Quote(strconv.FormatUint(o.ifMatch, 10)))
	}
	if o.ifAbsent {
		h.Set("If-None-Match", "*")
	}
	return h
}

// ReadOption changes how Get and List read.
type ReadOption func(*readOptions)

type readOptions struct {
	stale, keysOnly bool
	index           string // a blocking query's index= (WaitIndex, WaitCursor)
	wait            time.Duration
}

// WaitIndex makes Get a blocking query: it answers once the key has
// changed after index (a Value.Index, or the Index of the *APIError of a
// Get that found no key, to wait for its creation), or after wait (at most 10 minutes;
// 0 for the server's 5) with the key as it is. It may answer early without
// a change: compare the value or the Index. The call's deadline (ctx and
// WithTimeout) must leave room for the wait.
func WaitIndex(index uint64, wait time.Duration) ReadOption {
	return func(o *readOptions) { o.index, o.wait = strconv.FormatUint(index, 10), wait }
}

// WaitCursor makes List a blocking query, as WaitIndex does Get: it
// answers once a key under the prefix changed after cursor (a
// ListResult.Cursor), or after wait.
func WaitCursor(cursor string, wait time.Duration) ReadOption {
	return func(o *readOptions) { o.index, o.wait = cursor, wait }
}

// set adds the blocking-query parameters to q.
func (o *readOptions) set(q url.Values) url.Values {
	if o.index == "" {
		return q
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("index", o.index)
	if o.wait > 0 {
		q.Set("wait", o.wait.String())
	}
	return q
}

// KeysOnly makes List leave the values out (each KV's Value is empty).
func KeysOnly() ReadOption { return func(o *readOptions) { o.keysOnly = true } }

// Stale reads the local state of whichever node answers, without asking
// the shard leader. It is faster and works without a leader, but it may
// return an old value.
func Stale() ReadOption { return func(o *readOptions) { o.stale = true } }

func keyPath(key string) (string, error) {
	if key == "" {
		return "", fmt.Errorf("%w: empty key", ErrBadRequest)
	}
	if !utf8.ValidString(key) {
		return "", fmt.Errorf("%w: key is not valid UTF-8", ErrBadRequest)
	}
	return "/v1/kv/" + url.PathEscape(key), nil
}

// octetStream is the header of a put without conditions, shared by all of
// them: nothing modifies a request's header (doWrite copies it to add the
// idempotency key, attempt copies it into the HTTP request).
var octetStream = http.Header{"Content-Type": {"application/octet-stream"}}

// Put sets key to value. The write is acknowledged only once it is durable
// on a majority and applied. It is sent under an idempotency key and
// resent while its outcome is unknown (see WithIdempotencyKey and
// WithIdempotentRetry), so it applies at most once.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (PutResult, error) {
	var wo writeOptions
	for _, opt := range opts {
		opt(&wo)
	}
	if wo.ifAbsent && wo.hasIfMatch {
		return PutResult{}, fmt.Errorf("%w: IfMatch and IfAbsent cannot be combined", ErrBadRequest)
	}
	path, err := keyPath(key)
	if err != nil {
		return PutResult{}, err
	}
	if value == nil {
		value = []byte{}
	}
	h := octetStream
	if wo.hasIfMatch || wo.ifAbsent {
		h = wo.header()
		h.Set("Content-Type", "application/octet-stream")
	}
	req := request{method: http.MethodPut, path: path, header: h, body: value, write: true, key: key}
	if wo.lease != "" {
		req.query = url.Values{"lease": {wo.lease}}
	}
	resp, err := c.doWrite(ctx, req, wo.idemKey)
	if err != nil {
		return PutResult{}, err
	}
	var res PutResult
	if err := decodeJSON(resp, &res); err != nil {
		return PutResult{}, err
	}
	if res.Revision == 0 {
		res.Revision = parseETag(resp.header.Get("ETag"))
	}
	if res.Key == "" {
		res.Key = key
	}
	res.Node, res.Replayed = resp.node, replayedAnswer(resp)
	return res, nil
}

// Get returns the value of key, or an error matching ErrNotFound. By
// default the read is linearizable.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (Value, error) {
	var ro readOptions
	for _, opt := range opts {
		opt(&ro)
	}
	path, err := keyPath(key)
	if err != nil {
		return Value{}, err
	}
	var q url.Values
	routed := key // a linearizable read is served by the shard's leader
	if ro.stale {
		q = url.Values{"consistency": {"stale"}}
		routed = "" // any replica will do
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, query: ro.set(q), key: routed})
	if err != nil {
		return Value{}, err
	}
	v := Value{
		Key:      key,
		Value:    resp.body,
		Revision: parseETag(resp.header.Get("ETag")),
		Shard:    resp.header.Get("X-Raftkv-Shard"),
		Node:     resp.node,
		Lease:    resp.header.Get("X-Raftkv-Lease"),
	}
	v.Version, _ = strconv.ParseUint(resp.header.Get("X-Raftkv-Version"), 10, 64)
	v.CreateRevision, _ = strconv.ParseUint(resp.header.Get("X-Raftkv-Create-Revision"), 10, 64)
	v.Index, _ = strconv.ParseUint(resp.header.Get("X-Raftkv-Index"), 10, 64)
	return v, nil
}

// Delete removes key. It reports whether the key existed. IfMatch makes the
// delete conditional on the current revision.
func (c *Client) Delete(ctx context.Context, key string, opts ...WriteOption) (bool, error) {
	var wo writeOptions
	for _, opt := range opts {
		opt(&wo)
	}
	if wo.ifAbsent {
		return false, fmt.Errorf("%w: IfAbsent is not valid for Delete", ErrBadRequest)
	}
	if wo.lease != "" {
		return false, fmt.Errorf("%w: WithLease is not valid for Delete", ErrBadRequest)
	}
	path, err := keyPath(key)
	if err != nil {
		return false, err
	}
	resp, err := c.doWrite(ctx, request{method: http.MethodDelete, path: path, header: wo.header(), write: true, key: key}, wo.idemKey)
	if err != nil {
		return false, err
	}
	var res struct {
		Deleted bool `json:"deleted"`
	}
	if err := decodeJSON(resp, &res); err != nil {
		return false, err
	}
	return res.Deleted, nil
}

// List returns keys starting with prefix, sorted, beginning after the key
// after (exclusive; "" starts at the beginning). limit <= 0 uses the
// server's default page size. Values come back as bytes whether the server
// sent them as text or base64. By default each shard is read at its leader
// (linearizable per shard); Stale reads the answering node's replicas.
func (c *Client) List(ctx context.Context, prefix, after string, limit int, opts ...ReadOption) (ListResult, error) {
	var ro readOptions
	for _, opt := range opts {
		opt(&ro)
	}
	q := url.Values{}
	if ro.stale {
		q.Set("consistency", "stale")
	}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if ro.keysOnly {
		q.Set("keys_only", "true")
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/kv", query: ro.set(q)})
	if err != nil {
		return ListResult{}, err
	}
	var wire struct {
		Items []struct {
			Key         string  `json:"key"`
			Value       *string `json:"value"`
			ValueBase64 *string `json:"value_base64"`
			Version     uint64  `json:"version"`
			Revision    uint64  `json:"revision"`
			CreateRev   uint64  `json:"create_revision"`
		} `json:"items"`
		More bool `json:"more"`
	}
	if err := decodeJSON(resp, &wire); err != nil {
		return ListResult{}, err
	}
	res := ListResult{More: wire.More, Items: make([]KV, 0, len(wire.Items)), Cursor: resp.header.Get("X-Raftkv-Cursor")}
	for _, it := range wire.Items {
		kv := KV{Key: it.Key, Version: it.Version, Revision: it.Revision, CreateRevision: it.CreateRev, Value: []byte{}}
		switch {
		case it.ValueBase64 != nil:
			b, err := base64.StdEncoding.DecodeString(*it.ValueBase64)
			if err != nil {
				return ListResult{}, fmt.Errorf("raftkv: bad value_base64 for key %q: %w", it.Key, err)
			}
			kv.Value = b
		case it.Value != nil:
			kv.Value = []byte(*it.Value)
		}
		res.Items = append(res.Items, kv)
	}
	return res, nil
}

// parseETag reads a revision from an ETag such as `"42"` or `W/"42"`.
func parseETag(s string) uint64 {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	s = strings.Trim(s, `"`)
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// Count returns how many keys start with prefix, across every shard (of
// those the token may read). Stale counts the answering node's replicas.
func (c *Client) Count(ctx context.Context, prefix string, opts ...ReadOption) (int, error) {
	var ro readOptions
	for _, opt := range opts {
		opt(&ro)
	}
	q := url.Values{"count_only": {"true"}}
	if ro.stale {
		q.Set("consistency", "stale")
	}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/kv", query: q})
	if err != nil {
		return 0, err
	}
	var wire struct {
		Count int `json:"count"`
	}
	if err := decodeJSON(resp, &wire); err != nil {
		return 0, err
	}
	return wire.Count, nil
}

// DeletePrefix deletes every key under prefix, which must not be empty
// (DeleteAll deletes everything), and returns how many it deleted. Each
// shard's part is atomic; the shards are not one transaction. It may be
// repeated: keys already gone are not counted again.
func (c *Client) DeletePrefix(ctx context.Context, prefix string) (int, error) {
	if prefix == "" {
		return 0, fmt.Errorf("%w: empty prefix: use DeleteAll to delete every key", ErrBadRequest)
	}
	return c.deletePrefix(ctx, url.Values{"prefix": {prefix}})
}

// DeleteAll deletes every key of the cluster.
func (c *Client) DeleteAll(ctx context.Context) (int, error) {
	return c.deletePrefix(ctx, url.Values{"all": {"true"}})
}

func (c *Client) deletePrefix(ctx context.Context, q url.Values) (int, error) {
	resp, err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/kv", query: q, write: true, idempotent: true})
	if err != nil {
		return 0, err
	}
	var wire struct {
		Deleted int `json:"deleted"`
	}
	if err := decodeJSON(resp, &wire); err != nil {
		return 0, err
	}
	return wire.Deleted, nil
}
