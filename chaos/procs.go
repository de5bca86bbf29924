package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/systemtest"
)

// Timeouts for process management. Generous: the machines are small and
// shared, and a chaos run is slow anyway.
const (
	liveTimeout     = 20 * time.Second
	convergeTimeout = 45 * time.Second
	stopTimeout     = 15 * time.Second
)

// Cluster is a set of raftkv nodes. When it was started by this package it
// owns their processes (Proc.cmd); when attached to, it only knows their
// addresses and the nemeses that need a process refuse to run.
type Cluster struct {
	Nodes  []*Proc
	Shards int

	bin      string
	dir      string
	ownsDir  bool
	extra    []string
	net      *netLab // nil unless the nodes run in network namespaces
	attached bool
	logf     func(format string, args ...any)
}

// Proc is one node and, when this package started it, its process.
type Proc struct {
	ID       string
	HTTPAddr string
	RaftAddr string
	DataDir  string
	LogPath  string
	// NS is the network namespace the node runs in ("" = the caller's).
	NS string
	// IP is the node's address inside NS (netns mode only).
	IP string

	c *Cluster
	// mu guards cmd, done and paused.
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

// ClusterOptions describe a cluster to start.
type ClusterOptions struct {
	Nodes  int
	Shards int
	// Bin is the raftkv executable.
	Bin string
	// Dir holds data dirs and logs; a temp dir (removed by Close) when empty.
	Dir string
	// Netns runs every node in its own network namespace (root only), so
	// the partition nemesis can cut links.
	Netns bool
	// ExtraArgs are added to every node's command line.
	ExtraArgs []string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// StartCluster starts opts.Nodes fresh nodes (node1 bootstraps, the others
// join it) and waits until every node is ready and a voter of every group.
// On error every process already started is killed.
func StartCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	if opts.Nodes < 1 {
		return nil, errors.New("chaos: need at least one node")
	}
	if opts.Bin == "" {
		return nil, errors.New("chaos: no raftkv binary")
	}
	c := &Cluster{bin: opts.Bin, dir: opts.Dir, Shards: opts.Shards, extra: opts.ExtraArgs, logf: opts.Logf}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "raftkv-chaos-")
		if err != nil {
			return nil, err
		}
		c.dir, c.ownsDir = d, true
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	if opts.Netns {
		lab, err := newNetLab(opts.Nodes)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.net = lab
	}
	for i := 1; i <= opts.Nodes; i++ {
		p := &Proc{ID: fmt.Sprintf("node%d", i), c: c}
		p.DataDir = filepath.Join(c.dir, p.ID)
		p.LogPath = filepath.Join(c.dir, p.ID+".log")
		if c.net != nil {
			p.NS, p.IP = c.net.ns[i-1], c.net.ips[i-1]
			p.HTTPAddr = net.JoinHostPort(p.IP, "8080")
			p.RaftAddr = net.JoinHostPort(p.IP, "7000")
		} else {
			var err error
			if p.HTTPAddr, err = systemtest.FreeAddr(); err == nil {
				p.RaftAddr, err = systemtest.FreeAddr()
			}
			if err != nil {
				c.Close()
				return nil, err
			}
		}
		c.Nodes = append(c.Nodes, p)
		var join []string
		if i > 1 {
			join = []string{c.Nodes[0].HTTPAddr}
		}
		if err := p.start(join); err != nil {
			c.Close()
			return nil, err
		}
		if i == 1 {
			if err := c.WaitConverged(ctx, convergeTimeout); err != nil {
				c.Close()
				return nil, fmt.Errorf("bootstrap node not ready: %w", err)
			}
		}
	}
	if err := c.WaitConverged(ctx, convergeTimeout); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster did not converge: %w", err)
	}
	return c, nil
}

// Attach returns a Cluster for nodes that something else runs: the members
// come from the registry of the first address that answers.
func Attach(ctx context.Context, httpAddrs []string) (*Cluster, error) {
	if len(httpAddrs) == 0 {
		return nil, errors.New("chaos: no endpoints to attach to")
	}
	c := &Cluster{attached: true, logf: func(string, ...any) {}}
	var st *Status
	var err error
	for _, a := range httpAddrs {
		if st, err = getStatus(ctx, a); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	c.Shards = st.Shards
	for _, n := range st.Nodes {
		c.Nodes = append(c.Nodes, &Proc{ID: n.ID, HTTPAddr: n.HTTPAddr, RaftAddr: n.RaftAddr, c: c})
	}
	return c, nil
}

// Attached reports whether the cluster's processes belong to someone else.
func (c *Cluster) Attached() bool { return c.attached }

// Netns reports whether the nodes run in their own network namespaces.
func (c *Cluster) Netns() bool { return c.net != nil }

// Dir is where data dirs and node logs live.
func (c *Cluster) Dir() string { return c.dir }

// Close kills every process this cluster started (by PID), removes the
// network namespaces it created and, if it made it, its directory.
func (c *Cluster) Close() {
	for _, p := range c.Nodes {
		_ = p.Kill()
	}
	if c.net != nil {
		c.net.close()
		c.net = nil
	}
	if c.ownsDir && c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

// KeepDir stops Close from removing the directory (to keep the logs).
func (c *Cluster) KeepDir() { c.ownsDir = false }

// Node returns the node with the given id (or HTTP/raft address), or nil.
func (c *Cluster) Node(s string) *Proc {
	for _, p := range c.Nodes {
		if p.ID == s || p.HTTPAddr == s || p.RaftAddr == s {
			return p
		}
	}
	return nil
}

// Up returns the nodes whose process runs and is not paused. For an
// attached cluster every node counts as up.
func (c *Cluster) Up() []*Proc {
	var out []*Proc
	for _, p := range c.Nodes {
		if c.attached || (p.Running() && !p.Paused()) {
			out = append(out, p)
		}
	}
	return out
}

// WaitConverged waits until every running node answers /readyz and lists
// exactly the running nodes as voters of every group.
func (c *Cluster) WaitConverged(ctx context.Context, timeout time.Duration) error {
	return waitFor(ctx, timeout, func() error {
		up := c.Up()
		for _, p := range up {
			if err := p.ready(ctx); err != nil {
				return err
			}
			st, err := getStatus(ctx, p.HTTPAddr)
			if err != nil {
				return err
			}
			if len(st.Groups) < c.Shards+1 {
				return fmt.Errorf("%s knows %d groups, want %d", p.ID, len(st.Groups), c.Shards+1)
			}
			for _, g := range st.Groups {
				if len(g.Voters) != len(up) {
					return fmt.Errorf("%s: group %s voters %v, want %d", p.ID, g.Name, g.Voters, len(up))
				}
			}
		}
		return nil
	})
}

// LeaderOf returns the node that leads group, as the up nodes see it, with
// the leader itself agreeing.
func (c *Cluster) LeaderOf(ctx context.Context, group string) (*Proc, error) {
	var lastErr error = errors.New("no node up")
	for _, p := range c.Up() {
		st, err := getStatus(ctx, p.HTTPAddr)
		if err != nil {
			lastErr = err
			continue
		}
		g := st.Group(group)
		if g == nil || g.Leader == "" {
			lastErr = fmt.Errorf("%s sees no leader of %s", p.ID, group)
			continue
		}
		l := c.Node(g.Leader)
		if l == nil {
			lastErr = fmt.Errorf("unknown leader %q of %s", g.Leader, group)
			continue
		}
		lst, err := getStatus(ctx, l.HTTPAddr)
		if err != nil {
			lastErr = err
			continue
		}
		if lg := lst.Group(group); lg == nil || lg.State != "Leader" {
			lastErr = fmt.Errorf("%s does not think it leads %s", l.ID, group)
			continue
		}
		return l, nil
	}
	return nil, lastErr
}

// Groups returns meta and shard-1..shard-N.
func (c *Cluster) Groups() []string {
	out := []string{"meta"}
	for i := 1; i <= c.Shards; i++ {
		out = append(out, fmt.Sprintf("shard-%d", i))
	}
	return out
}

// Running reports whether the node's process is up (paused counts as up).
func (p *Proc) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Paused reports whether the process was stopped with SIGSTOP.
func (p *Proc) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// PID returns the current process id, or 0.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *Proc) args(join []string) []string {
	a := []string{"serve", "--id", p.ID, "--data-dir", p.DataDir,
		"--http-addr", p.HTTPAddr, "--raft-addr", p.RaftAddr}
	if len(join) > 0 {
		a = append(a, "--join", strings.Join(join, ","))
	} else if p.c.Shards > 0 {
		a = append(a, "--shards", strconv.Itoa(p.c.Shards))
	}
	return append(a, p.c.extra...)
}

// start launches the process and waits until it answers /livez.
func (p *Proc) start(join []string) error {
	if p.c.attached {
		return fmt.Errorf("%s: cannot start a node of an attached cluster", p.ID)
	}
	if p.Running() {
		return fmt.Errorf("%s: already running", p.ID)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := p.args(join)
	name := p.c.bin
	if p.NS != "" {
		// ip netns exec execs the program in place: the PID stays the node's.
		args = append([]string{"netns", "exec", p.NS, p.c.bin}, args...)
		name = "ip"
	}
	fmt.Fprintf(logf, "==== chaos: %s start %s %s\n", time.Now().Format(time.RFC3339Nano), name, strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	// If this process dies, its nodes die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", p.ID, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done, p.paused = cmd, done, false
	p.mu.Unlock()
	err = waitFor(context.Background(), liveTimeout, func() error {
		select {
		case <-done:
			return errors.New("process exited")
		default:
		}
		return p.live(context.Background())
	})
	if err != nil {
		_ = p.Kill()
		return fmt.Errorf("%s did not come up: %w (log %s)", p.ID, err, p.LogPath)
	}
	return nil
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAFTKV_") {
			env = append(env, kv)
		}
	}
	return env
}

// Restart starts the node again on its data dir and addresses.
func (p *Proc) Restart() error { return p.start(nil) }

// StartFresh wipes the data dir and starts the node with --join.
func (p *Proc) StartFresh(join []string) error {
	if err := os.RemoveAll(p.DataDir); err != nil {
		return err
	}
	return p.start(join)
}

// signal sends sig to the current process if it runs.
func (p *Proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s (pid %d): %v: %w", p.ID, cmd.Process.Pid, sig, err)
	}
	return nil
}

// Kill sends SIGKILL and waits until the process is reaped. A node that is
// down is left alone.
func (p *Proc) Kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.waitExit(10 * time.Second)
}

// Stop sends SIGTERM and waits; after stopTimeout it kills.
func (p *Proc) Stop() error {
	if p.Paused() {
		_ = p.Resume()
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := p.waitExit(stopTimeout); err != nil {
		return p.Kill()
	}
	return nil
}

func (p *Proc) waitExit(d time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		p.mu.Lock()
		p.paused = false
		p.mu.Unlock()
		return nil
	case <-time.After(d):
		return fmt.Errorf("%s still running %s after the signal", p.ID, d)
	}
}

// Pause stops the process with SIGSTOP.
func (p *Proc) Pause() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	return nil
}

// Resume continues a paused process with SIGCONT.
func (p *Proc) Resume() error {
	if err := p.signal(syscall.SIGCONT); err != nil {
		return err
	}
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	return nil
}

// waitFor calls cond every 50 ms until it returns nil, ctx ends or timeout
// passes; it then returns the last error.
func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
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
		case <-time.After(50 * time.Millisecond):
		}
	}
}
