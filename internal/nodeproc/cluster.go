package nodeproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Timeouts of the harness. They are generous on purpose: the machines that
// run it are small and shared.
const (
	// LiveTimeout bounds how long a started process may take to answer /livez.
	LiveTimeout = 20 * time.Second
	// ConvergeTimeout bounds how long a cluster may take to converge.
	ConvergeTimeout = 45 * time.Second
	// StopTimeout bounds how long a node may take to exit after SIGTERM.
	StopTimeout = 30 * time.Second
	// KillTimeout bounds how long a node may take to be reaped after SIGKILL.
	KillTimeout = 10 * time.Second
	// ProbeTimeout bounds each /livez, /readyz and /v1/cluster request.
	ProbeTimeout = 5 * time.Second
	// pollInterval is how often WaitFor re-checks a condition.
	pollInterval = 50 * time.Millisecond
	// startAttempts is how many times a start is tried on a port clash.
	startAttempts = 4
)

// Options describe a cluster to start.
type Options struct {
	// Nodes is how many nodes to run (node1..nodeN). node1 bootstraps.
	Nodes int
	// Shards is passed as --shards to the bootstrapping node (0: the
	// server's default; Cluster.Shards is then read from node1).
	Shards int
	// Bin is the raftkv executable (see BuildBinary).
	Bin string
	// Dir holds data dirs and logs; a temp dir, removed by Close, when empty.
	Dir string
	// ExtraArgs are added to every node's command line.
	ExtraArgs []string
	// TLS makes a cluster CA in Dir/certs and runs every node with a
	// certificate of it (Node.TLS): mutual TLS on the raft port, HTTPS with
	// client certificates on the API, and joins through https://.
	TLS bool
	// PeerTLSOnly, with TLS, keeps the API on plain HTTP: only the raft
	// port runs mutual TLS (TLSFiles.PeerOnly).
	PeerTLSOnly bool
	// Token is the bearer token the harness's own requests (/v1/cluster)
	// carry, for a cluster that runs with --auth; empty sends none.
	Token string
	// Place, when set, gives node i (0-based) its addresses and, if it needs
	// one, a Wrap command; those addresses are then kept. When nil, nodes
	// get free 127.0.0.1 ports (others, should a port turn out taken).
	Place func(i int, n *Node)
	// Logf receives what Close notices (a node that exited on its own); nil
	// discards it.
	Logf func(format string, args ...any)
}

// Cluster is a set of raftkv nodes. When New made it, it owns their
// processes; when Attach made it, it only knows their addresses, and
// starting or signalling a node is refused or does nothing.
type Cluster struct {
	Nodes []*Node
	// Shards is the number of data shards (shard-1..shard-N).
	Shards int

	bin      string
	dir      string
	ownsDir  bool
	extra    []string
	place    func(int, *Node)
	attached bool
	logf     func(format string, args ...any)
	certDir  string // the CA's directory with Options.TLS, else ""
	peerOnly bool   // Options.PeerTLSOnly
	token    string // Options.Token
}

// New prepares a cluster of opts.Nodes nodes (none started yet; see Start)
// and its directory. Close it when done, whether Start succeeded or not.
func New(opts Options) (*Cluster, error) {
	if opts.Nodes < 1 {
		return nil, errors.New("nodeproc: need at least one node")
	}
	if opts.Bin == "" {
		return nil, errors.New("nodeproc: no raftkv binary")
	}
	c := &Cluster{bin: opts.Bin, dir: opts.Dir, Shards: opts.Shards, extra: opts.ExtraArgs,
		place: opts.Place, logf: opts.Logf, peerOnly: opts.PeerTLSOnly, token: opts.Token}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "raftkv-nodes-")
		if err != nil {
			return nil, err
		}
		c.dir, c.ownsDir = d, true
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	if opts.TLS {
		if err := c.initTLS(); err != nil {
			return nil, err
		}
	}
	for i := range opts.Nodes {
		n := c.AddNode(fmt.Sprintf("node%d", i+1))
		if c.place != nil {
			c.place(i, n)
		}
	}
	return c, nil
}

// Start starts every node fresh (node1 bootstraps; once it is ready the
// others join it, one after the other) and waits until every node is ready
// and a voter of every group.
func (c *Cluster) Start(ctx context.Context) error {
	for i, n := range c.Nodes {
		if i > 0 {
			n.Join = []string{c.Nodes[0].joinAddr()}
		}
		if err := n.start(true, c.place == nil); err != nil {
			return fmt.Errorf("start %s: %w", n.ID, err)
		}
		if i == 0 {
			// Let the bootstrap node elect itself everywhere before anyone
			// asks it to add them.
			if err := c.WaitConverged(ctx, ConvergeTimeout, n); err != nil {
				return fmt.Errorf("bootstrap node not ready: %w", err)
			}
		}
	}
	if err := c.WaitConverged(ctx, ConvergeTimeout, c.Nodes...); err != nil {
		return fmt.Errorf("cluster did not converge: %w", err)
	}
	if c.Shards == 0 {
		st, err := c.Nodes[0].Status(ctx)
		if err != nil {
			return err
		}
		c.Shards = st.Shards
	}
	return nil
}

// Attach returns a Cluster for nodes that something else runs: the members
// come from the registry of the first address that answers.
func Attach(ctx context.Context, httpAddrs []string) (*Cluster, error) {
	if len(httpAddrs) == 0 {
		return nil, errors.New("nodeproc: no endpoints to attach to")
	}
	var st *Status
	var err error
	for _, a := range httpAddrs {
		if st, err = FetchStatus(ctx, a); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	c := &Cluster{attached: true, Shards: st.Shards, logf: func(string, ...any) {}}
	for _, n := range st.Nodes {
		c.Nodes = append(c.Nodes, &Node{ID: n.ID, HTTPAddr: n.HTTPAddr, RaftAddr: n.RaftAddr, c: c})
	}
	return c, nil
}

// Attached reports whether the cluster's processes belong to someone else.
func (c *Cluster) Attached() bool { return c.attached }

// Dir is where data dirs and node logs live.
func (c *Cluster) Dir() string { return c.dir }

// AddNode adds a node that is not started: no addresses yet (see
// PickPorts), its data dir and log in the cluster's directory, the
// cluster's extra args.
func (c *Cluster) AddNode(id string) *Node {
	n := &Node{
		ID:      id,
		DataDir: filepath.Join(c.dir, id),
		LogPath: filepath.Join(c.dir, id+".log"),
		Args:    slices.Clone(c.extra),
		c:       c,
	}
	c.Nodes = append(c.Nodes, n)
	return n
}

// Close kills every process this cluster started (by PID) and, if New made
// the directory, removes it. A node that had exited on its own is reported
// to Options.Logf.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.Nodes {
		if msg, ok := n.exitedOnItsOwn(); ok {
			c.logf("%s", msg)
		}
		if err := n.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ownsDir && c.dir != "" {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}

// LogTails returns the last lines of every node's log, one block a node.
func (c *Cluster) LogTails(lines int) string {
	var b strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "---- last %d lines of %s (%s) ----\n%s\n", lines, n.ID, n.LogPath, n.LogTail(lines))
	}
	return b.String()
}

// Node returns the node with the given id, HTTP or raft address, or nil.
func (c *Cluster) Node(s string) *Node {
	for _, n := range c.Nodes {
		if s == n.ID || s == n.HTTPAddr || s == n.RaftAddr {
			return n
		}
	}
	return nil
}

// Running returns the nodes whose process is up (paused ones included).
func (c *Cluster) Running() []*Node { return c.where((*Node).Running) }

// Up returns the nodes that should answer (see Node.Up).
func (c *Cluster) Up() []*Node { return c.where((*Node).Up) }

func (c *Cluster) where(keep func(*Node) bool) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if keep(n) {
			out = append(out, n)
		}
	}
	return out
}

// Groups returns meta and shard-1..shard-N.
func (c *Cluster) Groups() []string {
	out := []string{"meta"}
	for i := 1; i <= c.Shards; i++ {
		out = append(out, fmt.Sprintf("shard-%d", i))
	}
	return out
}

// WaitConverged waits until every given node (none given: every up node,
// as it is at each check) answers /readyz with 200 and its own /v1/cluster
// lists exactly those nodes as the voters of every group, with meta and
// shard-1..N all present.
func (c *Cluster) WaitConverged(ctx context.Context, timeout time.Duration, nodes ...*Node) error {
	return WaitFor(ctx, timeout, func() error {
		check := nodes
		if len(check) == 0 {
			check = c.Up()
		}
		if len(check) == 0 {
			return errors.New("no node up")
		}
		want := make([]string, 0, len(check))
		for _, n := range check {
			want = append(want, n.ID)
		}
		slices.Sort(want)
		for _, n := range check {
			if err := n.Ready(ctx); err != nil {
				return err
			}
			st, err := n.Status(ctx)
			if err != nil {
				return err
			}
			if err := c.checkVoters(st, want); err != nil {
				return fmt.Errorf("%s's view: %w", n.ID, err)
			}
		}
		return nil
	})
}

func (c *Cluster) checkVoters(st *Status, want []string) error {
	names := map[string]bool{}
	for _, g := range st.Groups {
		names[g.Name] = true
		got := slices.Clone(g.Voters)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("group %s voters %v, want %v (nonvoters %v)", g.Name, got, want, g.Nonvoters)
		}
	}
	if !names["meta"] {
		return fmt.Errorf("no meta group in %d groups", len(st.Groups))
	}
	shards := c.Shards
	if shards <= 0 {
		shards = st.Shards
	}
	for i := 1; i <= shards; i++ {
		if name := fmt.Sprintf("shard-%d", i); !names[name] {
			return fmt.Errorf("group %s missing", name)
		}
	}
	return nil
}

// LeaderOf returns the node that leads group: an up node names it, and the
// named node, asked itself, says it is the leader.
func (c *Cluster) LeaderOf(ctx context.Context, group string) (*Node, error) {
	var lastErr error = errors.New("no node up")
	for _, n := range c.Up() {
		st, err := n.Status(ctx)
		if err != nil {
			lastErr = err
			continue
		}
		g, ok := st.Group(group)
		if !ok || g.Leader == "" {
			lastErr = fmt.Errorf("%s sees no leader of %s", n.ID, group)
			continue
		}
		l := c.Node(g.Leader)
		if l == nil || !l.Up() {
			lastErr = fmt.Errorf("%s names %q as leader of %s, which is not a node that is up", n.ID, g.Leader, group)
			continue
		}
		lst, err := l.Status(ctx)
		if err != nil {
			lastErr = err
			continue
		}
		if lg, ok := lst.Group(group); !ok || lg.State != "Leader" {
			lastErr = fmt.Errorf("%s does not think it leads %s", l.ID, group)
			continue
		}
		return l, nil
	}
	return nil, lastErr
}

// WaitLeaderOf polls LeaderOf until it succeeds, ctx ends or timeout passes.
func (c *Cluster) WaitLeaderOf(ctx context.Context, group string, timeout time.Duration) (*Node, error) {
	var leader *Node
	err := WaitFor(ctx, timeout, func() error {
		l, err := c.LeaderOf(ctx, group)
		leader = l
		return err
	})
	return leader, err
}

// WaitFor calls cond every 50 ms until it returns nil, ctx ends or timeout
// passes, and then returns the last error it saw.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}
