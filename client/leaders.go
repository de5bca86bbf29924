package client

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/keyspace"
)

// WithLeaderRouting makes the client send each key request straight to the
// leader of the key's shard, so it skips the hop a node that does not lead
// the shard would make. The client learns the shard count, the nodes'
// addresses and the leaders from GET /v1/cluster, and keeps them current
// from every answer: a key request's answer names the node that served it
// (X-Raftkv-Node, the shard's leader) and the shard (X-Raftkv-Shard), so a
// leader change is learnt from the first request that a former leader's
// successor served. When the leader it picked cannot be reached, the
// request goes to the endpoints as usual, and any node forwards it.
//
// A node that cannot reach the shard's leader answers 503 or 504 with a
// leader hint (X-Raftkv-Leader, X-Raftkv-Leader-Addr): the client records
// it at once, and sends the request to the hinted leader once more when
// that cannot apply a write twice (see answered).
//
// It pays off when the nodes' advertised HTTP addresses (--advertise-http)
// are reachable from the client. Behind a load balancer it still works: a
// leader address that cannot be dialled is skipped for downFor, and the
// requests go to the endpoints, which forward.
func WithLeaderRouting() Option { return func(o *options) { o.leaderRouting = true } }

// refreshEvery bounds how often the router asks GET /v1/cluster again after
// it met a node it does not know.
const refreshEvery = time.Second

// downFor is how long a leader address that could not be dialled is left
// alone. Long enough that a client which cannot reach the nodes' own
// addresses pays a failed dial only now and then, short enough that a
// restarted leader is used again soon (until then its requests take the
// forwarding hop, nothing worse).
const downFor = 10 * time.Second

// router is the client's picture of who leads what.
type router struct {
	mu        sync.Mutex
	shards    int
	addrs     map[string]string    // node id -> base URL
	leaders   map[string]string    // shard name -> node id
	down      map[string]time.Time // base URL -> when a dial to it failed
	refreshed time.Time            // last refresh attempt
	stale     bool                 // an answer named a node not in addrs
}

// leaderURL returns the base URL of the leader of key's shard, or "" when
// it is not known (the request then goes to the endpoints in turn).
func (c *Client) leaderURL(ctx context.Context, key string) string {
	rt := c.router
	rt.mu.Lock()
	due := (rt.shards == 0 || rt.stale) && time.Since(rt.refreshed) >= refreshEvery
	if due {
		rt.refreshed = time.Now()
	}
	rt.mu.Unlock()
	if due {
		c.refreshRoutes(ctx)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.shards == 0 {
		return ""
	}
	u := rt.addrs[rt.leaders[keyspace.ShardFor(key, rt.shards)]]
	if rt.isDown(u) {
		return ""
	}
	return u
}

// isDown reports whether a dial to base URL u failed less than downFor ago.
// Called with mu held.
func (rt *router) isDown(u string) bool {
	at, ok := rt.down[u]
	if ok && time.Since(at) >= downFor {
		delete(rt.down, u)
		return false
	}
	return ok
}

// markDown records that base URL u could not be dialled.
func (c *Client) markDown(u string) {
	rt := c.router
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.down == nil {
		rt.down = map[string]time.Time{}
	}
	rt.down[u] = time.Now()
}

// refreshRoutes reads the cluster's shard count, nodes and leaders. It asks
// without probe=true: the router needs the answering node's view only, and
// probing every node would make the first request of a client wait for the
// slowest probe.
func (c *Client) refreshRoutes(ctx context.Context) {
	st, err := c.status(ctx, false)
	if err != nil || st.Shards < 1 {
		return
	}
	addrs := make(map[string]string, len(st.Nodes))
	for _, n := range st.Nodes {
		if u := normalizeEndpoint(n.HTTPAddr, c.scheme); u != "" {
			addrs[n.ID] = u
		}
	}
	leaders := make(map[string]string, len(st.Groups))
	for _, g := range st.Groups {
		if g.Leader != "" {
			leaders[g.Name] = g.Leader
		}
	}
	rt := c.router
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.shards, rt.addrs, rt.stale = st.Shards, addrs, false
	for shard, id := range leaders {
		rt.leaders[shard] = id
	}
}

// Answer headers the router reads.
const (
	headerNode       = "X-Raftkv-Node"
	headerShard      = "X-Raftkv-Shard"
	headerLeader     = "X-Raftkv-Leader"
	headerLeaderAddr = "X-Raftkv-Leader-Addr"
)

// learn records who served a key request: X-Raftkv-Node of an answer that
// names a shard is that shard's leader (a node that is not forwards).
func (c *Client) learn(h http.Header) {
	shard, node := h.Get(headerShard), h.Get(headerNode)
	if shard == "" || node == "" {
		return
	}
	rt := c.router
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.leaders[shard] = node
	if _, ok := rt.addrs[node]; !ok {
		rt.stale = true
	}
}

// learnHint records the leader hint of an error answer to a key request
// and returns the hinted leader's base URL, or "" when the answer has no
// hint or the leader's address is not known (the next request then asks
// GET /v1/cluster for it).
func (c *Client) learnHint(h http.Header) string {
	shard, id := h.Get(headerShard), h.Get(headerLeader)
	if shard == "" || id == "" {
		return ""
	}
	rt := c.router
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.leaders[shard] = id
	if u := normalizeEndpoint(h.Get(headerLeaderAddr), c.scheme); u != "" {
		if rt.addrs == nil {
			rt.addrs = map[string]string{}
		}
		rt.addrs[id] = u
	}
	u, ok := rt.addrs[id]
	if !ok {
		rt.stale = true
	}
	if rt.isDown(u) {
		return ""
	}
	return u
}

// answered handles an error answer to a key request of a routing client.
// An answer below 500 was decided by the shard's leader (or before any
// routing, and then it names no shard): it only teaches who leads. A 503 or
// 504 may carry a leader hint; the client records it and, if resending is
// safe, sends the request once to the hinted leader, which it had not
// tried. At most one such retry: a node whose hint leads nowhere should not
// bounce the client around until the deadline.
func (c *Client) answered(ctx context.Context, r request, tried string, apiErr *APIError) (*response, error) {
	if apiErr.Status < 500 {
		c.learn(apiErr.header)
		return nil, apiErr
	}
	hint := c.learnHint(apiErr.header)
	if hint == "" || hint == tried || !hintRetrySafe(r, apiErr) || ctx.Err() != nil {
		return nil, apiErr
	}
	resp, delivered, err := c.attempt(ctx, hint, r)
	var again *APIError
	switch {
	case err == nil:
		c.learn(resp.header)
		return resp, nil
	case errors.As(err, &again):
		if again.Status < 500 {
			c.learn(again.header)
		} else {
			c.learnHint(again.header)
		}
		return nil, again
	case !delivered:
		// The hinted leader could not be reached, so nothing more
		// happened: the first answer stands.
		c.markDown(hint)
		return nil, apiErr
	}
	var se *sinkError
	if errors.As(err, &se) {
		return nil, se.err
	}
	return nil, &RequestError{Op: r.op(), Endpoint: hint, Err: err, Sent: true,
		Timeout: errors.Is(ctx.Err(), context.DeadlineExceeded), Indeterminate: r.write}
}

// hintRetrySafe says whether r may be sent again after the error answer e.
// A read, or an idempotent write, may go again after any 5xx. Any other
// write only after 503 unavailable with raftkv's own error body: the API
// promises the operation did not happen (the node gave up before anything
// was proposed, or saw every attempt refused). A 504 may hide a write that
// was applied, so it is never resent. e.Indeterminate stays what it is for
// the caller who gets e back: the client does not tell a node's 503 from a
// proxy's in general, but a leader hint only comes from a node.
func hintRetrySafe(r request, e *APIError) bool {
	if !r.write || r.idempotent {
		return true
	}
	return e.Status == http.StatusServiceUnavailable && e.Code == CodeUnavailable
}
