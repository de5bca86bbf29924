package client

import (
	"context"
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
// Use it when the nodes' advertised HTTP addresses (--advertise-http) are
// reachable from the client; behind a load balancer, leave it off.
func WithLeaderRouting() Option { return func(o *options) { o.leaderRouting = true } }

// refreshEvery bounds how often the router asks GET /v1/cluster again after
// it met a node it does not know.
const refreshEvery = time.Second

// router is the client's picture of who leads what.
type router struct {
	mu        sync.Mutex
	shards    int
	addrs     map[string]string // node id -> base URL
	leaders   map[string]string // shard name -> node id
	refreshed time.Time         // last refresh attempt
	stale     bool              // an answer named a node not in addrs
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
	return rt.addrs[rt.leaders[keyspace.ShardFor(key, rt.shards)]]
}

// refreshRoutes reads the cluster's shard count, nodes and leaders.
func (c *Client) refreshRoutes(ctx context.Context) {
	st, err := c.Cluster(ctx)
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

// learn records who served a key request.
func (c *Client) learn(h http.Header) {
	shard, node := h.Get("X-Raftkv-Shard"), h.Get("X-Raftkv-Node")
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
