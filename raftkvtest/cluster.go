// Package raftkvtest builds in-process raftkv clusters for tests: N nodes in
// one process, every raft group over raft's in-memory transport (so tests can
// cut links between nodes), and each node's real HTTP API on 127.0.0.1.
package raftkvtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/httpapi"
)

// Cluster is a set of in-process nodes.
type Cluster struct {
	t      testing.TB
	shards int
	tune   func(*cluster.Config)
	Nodes  []*Node
	// trans[group][i] is node i's transport in that group.
	trans map[string][]*raft.InmemTransport
	// calls carries node-to-node calls between the nodes.
	calls *pipeNet
	// streams, in a cluster from NewStreamCluster, carries each group's
	// raft traffic (streams[group]) in place of trans: raft's network
	// transport over in-memory pipes, so every connection opens with the
	// nodes' incarnation hello as it does over the raft port;
	// streams[cluster.LaneLayer] carries the nodes' append lanes.
	streams map[string]*pipeNet
}

// Node is one in-process node with its HTTP server.
type Node struct {
	ID       string
	HTTPAddr string
	*cluster.Node
	srv     *http.Server
	dataDir string
	stopped bool
	mu      sync.Mutex
}

// Groups lists the group names of a cluster with the given shard count.
func Groups(shards int) []string {
	names := []string{cluster.MetaGroup}
	for i := 1; i <= shards; i++ {
		names = append(names, fmt.Sprintf("shard-%d", i))
	}
	return names
}

// NewCluster starts n nodes: node1 bootstraps, the others join through it.
// It returns once every node is a voter of every group and every group has
// a leader. Everything is stopped by t.Cleanup.
func NewCluster(t testing.TB, n, shards int) *Cluster {
	t.Helper()
	return NewClusterWith(t, n, shards, nil)
}

// NewClusterWith is NewCluster with a hook that adjusts every node's config
// (for example smaller checkpoint thresholds).
func NewClusterWith(t testing.TB, n, shards int, tune func(*cluster.Config)) *Cluster {
	t.Helper()
	c := &Cluster{t: t, shards: shards, tune: tune, trans: map[string][]*raft.InmemTransport{}, calls: newPipeNet()}
	for _, g := range Groups(shards) {
		for i := 0; i < n; i++ {
			_, tr := raft.NewInmemTransportWithTimeout(raftAddr(i), time.Second)
			c.trans[g] = append(c.trans[g], tr)
		}
	}
	c.start(n)
	return c
}

// NewStreamCluster is NewClusterWith with each group's raft traffic on
// raft's network transport over in-memory pipes instead of its in-memory
// transport: connections open with the incarnation hello, as over a real
// raft port, and Disconnect still cuts them.
func NewStreamCluster(t testing.TB, n, shards int, tune func(*cluster.Config)) *Cluster {
	t.Helper()
	c := &Cluster{t: t, shards: shards, tune: tune, calls: newPipeNet(), streams: map[string]*pipeNet{}}
	for _, g := range append(Groups(shards), cluster.LaneLayer) {
		c.streams[g] = newPipeNet()
	}
	c.start(n)
	return c
}

func (c *Cluster) start(n int) {
	c.t.Helper()
	t := c.t
	c.connectAll()
	t.Cleanup(c.Close)
	for i := 0; i < n; i++ {
		var join []string
		if i > 0 {
			join = []string{c.Nodes[0].HTTPAddr}
		}
		c.Nodes = append(c.Nodes, c.startNode(i, t.TempDir(), "", join))
	}
	c.WaitReady()
}

// RestoreCluster builds a one-node cluster from a backup archive, as
// `raftkv snapshot restore` followed by `raftkv serve` does
// (cluster.RestoreDataDir into a fresh data dir, then the node started on
// it), and returns once it is ready. Everything is stopped by t.Cleanup.
func RestoreCluster(t testing.TB, archive string) *Cluster {
	t.Helper()
	rep, err := backup.Inspect(archive)
	if err != nil {
		t.Fatalf("inspect %s: %v", archive, err)
	}
	c := &Cluster{t: t, shards: rep.Manifest.Shards, trans: map[string][]*raft.InmemTransport{}, calls: newPipeNet()}
	for _, g := range Groups(c.shards) {
		_, tr := raft.NewInmemTransportWithTimeout(raftAddr(0), time.Second)
		c.trans[g] = append(c.trans[g], tr)
	}
	c.connectAll()
	t.Cleanup(c.Close)
	// The HTTP address goes into the restored registry, so it is chosen
	// first; the node listens on it again right after.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	if _, err := cluster.RestoreDataDir(archive, cluster.RestoreConfig{DataDir: dir, NodeID: nodeID(0),
		RaftAddr: string(raftAddr(0)), HTTPAddr: httpAddr}); err != nil {
		t.Fatalf("restore %s: %v", archive, err)
	}
	c.Nodes = append(c.Nodes, c.startNode(0, dir, httpAddr, nil))
	c.WaitReady()
	return c
}

func nodeID(i int) string { return fmt.Sprintf("node%d", i+1) }

// raftAddr is node i's address on the in-memory transports. It only has to
// look like host:port; nothing listens on it.
func raftAddr(i int) raft.ServerAddress { return raft.ServerAddress(nodeID(i) + ":7000") }

func (c *Cluster) connectAll() {
	c.calls.healAll()
	for _, p := range c.streams {
		p.healAll()
	}
	for _, trs := range c.trans {
		for _, a := range trs {
			for _, b := range trs {
				if a != b {
					a.Connect(b.LocalAddr(), b)
				}
			}
		}
	}
}

// startNode starts node i on dataDir, reusing httpAddr when restarting.
func (c *Cluster) startNode(i int, dataDir, httpAddr string, join []string) *Node {
	c.t.Helper()
	n, err := c.tryStartNode(i, dataDir, httpAddr, join)
	if err != nil {
		c.t.Fatalf("start %s: %v", nodeID(i), err)
	}
	return n
}

func (c *Cluster) tryStartNode(i int, dataDir, httpAddr string, join []string) (*Node, error) {
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return nil, err
	}
	cfg := cluster.DefaultConfig()
	cfg.NodeID = nodeID(i)
	cfg.DataDir = dataDir
	cfg.HTTPAddr = ln.Addr().String()
	cfg.RaftAddr = string(raftAddr(i))
	cfg.Shards = c.shards
	cfg.Join = join
	// The raft timing is the shipped default: three nodes of five groups
	// each in one process, under the race detector on two cores, is a
	// loaded machine, and tighter timeouts there elect leaders at random.
	cfg.JoinTimeout = 30 * time.Second
	// Tests that check who leads what would race with the balancer; the
	// balancing test turns it on through the tune hook.
	cfg.BalanceInterval = 0
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.NodeID, Output: testWriter{c.t}, Level: hclog.Info})
	if c.streams != nil {
		cfg.NewStreamLayer = func(group string) (raft.StreamLayer, error) { return c.streams[group].layer(raftAddr(i)), nil }
		// Fresh addresses, which no cluster lists: a short listen before
		// bootstrapping keeps the start quick.
		cfg.BootstrapWait = 200 * time.Millisecond
	} else {
		cfg.NewTransport = func(group string) (raft.Transport, error) { return c.trans[group][i], nil }
	}
	cfg.NewRPCLayer = func() (raft.StreamLayer, error) { return c.calls.layer(raftAddr(i)), nil }
	if c.tune != nil {
		c.tune(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := cluster.New(ctx, cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	api := httpapi.New(node)
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	srv.RegisterOnShutdown(api.EndStreams) // as raftkv serve does: streams end with the server
	go func() { _ = srv.Serve(ln) }()
	return &Node{ID: cfg.NodeID, HTTPAddr: cfg.HTTPAddr, Node: node, srv: srv, dataDir: dataDir}, nil
}

// DataDir returns the node's data dir.
func (n *Node) DataDir() string { return n.dataDir }

// Stop shuts node i down (HTTP, then raft), keeping its data dir.
func (c *Cluster) Stop(i int) {
	nd := c.Nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.stopped {
		return
	}
	nd.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = nd.srv.Shutdown(ctx)
	if err := nd.Node.Close(); err != nil {
		c.t.Logf("close %s: %v", nd.ID, err)
	}
}

// Restart starts a stopped node again from its data dir on the same address.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.TryRestart(i); err != nil {
		c.t.Fatalf("restart %s: %v", c.Nodes[i].ID, err)
	}
}

// TryRestart is Restart that returns the start error instead of failing.
func (c *Cluster) TryRestart(i int) error {
	return c.restart(i, false, false)
}

// RestartWiped starts a stopped node again on the same addresses with an
// empty data dir and --join node (the first other node): a node whose disk
// was replaced without leaving the cluster first.
func (c *Cluster) RestartWiped(i int) {
	c.t.Helper()
	if err := c.restart(i, true, true); err != nil {
		c.t.Fatalf("restart %s wiped: %v", c.Nodes[i].ID, err)
	}
}

// TryRestartWipedAlone starts a stopped node again on the same addresses
// with an empty data dir and no --join, as an operator who forgot the flag
// would, and returns the start error.
func (c *Cluster) TryRestartWipedAlone(i int) error {
	return c.restart(i, true, false)
}

func (c *Cluster) restart(i int, wipe, join bool) error {
	old := c.Nodes[i]
	var via []string
	if wipe {
		if err := os.RemoveAll(old.dataDir); err != nil {
			return err
		}
	}
	if wipe && join {
		via = []string{c.Nodes[(i+1)%len(c.Nodes)].HTTPAddr}
	}
	if c.streams == nil {
		for _, trs := range c.trans {
			// A closed in-memory transport cannot be reused: give the node a
			// fresh one at the same address and reconnect everyone to it
			// (which heals every cut).
			_, trs[i] = raft.NewInmemTransportWithTimeout(raftAddr(i), time.Second)
		}
		c.connectAll()
	}
	// In a stream cluster the node's new layers take the old ones' place
	// and cuts stay as they were, as a partition outlives a restart.
	n, err := c.tryStartNode(i, old.dataDir, old.HTTPAddr, via)
	if err != nil {
		return err
	}
	c.Nodes[i] = n
	return nil
}

// Close stops every node.
func (c *Cluster) Close() {
	for i := range c.Nodes {
		c.Stop(i)
	}
}

// Running returns the nodes that are not stopped.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		n.mu.Lock()
		if !n.stopped {
			out = append(out, n)
		}
		n.mu.Unlock()
	}
	return out
}

// Disconnect cuts every link between node i and the others on the raft
// port: raft traffic in every group and node-to-node calls. Its HTTP API
// still answers clients, as a node behind a partition would.
func (c *Cluster) Disconnect(i int) {
	for j := range c.Nodes {
		if j != i {
			c.calls.setCut(raftAddr(i), raftAddr(j), true)
			for _, p := range c.streams {
				p.setCut(raftAddr(i), raftAddr(j), true)
			}
		}
	}
	for _, trs := range c.trans {
		for j, tr := range trs {
			if j != i {
				tr.Disconnect(trs[i].LocalAddr())
				trs[i].Disconnect(tr.LocalAddr())
			}
		}
	}
}

// CutCalls cuts the node-to-node calls between nodes i and j (forwarding
// to a leader, catch-up checks, probes) but not raft traffic: each keeps
// following the leader it knows and cannot forward to it, the case where a
// node answers 503 with a leader hint.
func (c *Cluster) CutCalls(i, j int) { c.calls.setCut(raftAddr(i), raftAddr(j), true) }

// Heal reconnects every raft link.
func (c *Cluster) Heal() { c.connectAll() }

// WaitReady polls until every running node reports ready.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	Eventually(c.t, 30*time.Second, func() error {
		for _, n := range c.Running() {
			if ok, why := n.Ready(); !ok {
				return fmt.Errorf("%s: %s", n.ID, why)
			}
		}
		return nil
	})
}

// Leader returns the index of the node that leads group, waiting for one
// that all running nodes agree on.
func (c *Cluster) Leader(group string) int {
	c.t.Helper()
	leader := -1
	Eventually(c.t, 10*time.Second, func() error {
		leader = -1
		var seen string
		for _, n := range c.Running() {
			st := groupStatus(n, group)
			if st.Leader == "" || (seen != "" && st.Leader != seen) {
				return fmt.Errorf("%s: no agreed leader of %s (%q vs %q)", n.ID, group, seen, st.Leader)
			}
			seen = st.Leader
		}
		for i, n := range c.Nodes {
			if n.ID == seen {
				leader = i
			}
		}
		if leader < 0 || c.Nodes[leader].stopped {
			return fmt.Errorf("leader %q of %s is not running", seen, group)
		}
		return nil
	})
	return leader
}

func groupStatus(n *Node, group string) cluster.GroupStatus {
	for _, g := range n.Status().Groups {
		if g.Name == group {
			return g
		}
	}
	return cluster.GroupStatus{}
}

// Eventually polls f every 20 ms until it returns nil or the deadline passes.
func Eventually(t testing.TB, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testWriter sends log lines to t.Log so they show only on failure.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// MakeLeader moves the leadership of group to node i (if it does not lead
// it already) and waits until every running node agrees.
func (c *Cluster) MakeLeader(group string, i int) {
	c.t.Helper()
	Eventually(c.t, 20*time.Second, func() error {
		if c.Leader(group) == i {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Nodes[i].TransferLeadership(ctx, group, c.Nodes[i].ID); err != nil {
			return fmt.Errorf("transfer %s to %s: %w", group, c.Nodes[i].ID, err)
		}
		return fmt.Errorf("%s does not lead %s yet", c.Nodes[i].ID, group)
	})
}
