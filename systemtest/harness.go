// Package systemtest runs real `raftkv serve` processes on 127.0.0.1 and
// drives them over HTTP, the way an operator or a client program would.
//
// This file is the reusable harness: building the binary, picking ports,
// starting, stopping, killing and restarting nodes, waiting for a cluster to
// converge, and a few raw net/http helpers. It is a normal (non-test) file so
// that tools outside `go test`, such as a chaos runner, can use it through the
// small TB interface. The scenarios live in the _test.go files.
package systemtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BinaryEnv names the environment variable that points at a prebuilt raftkv
// binary. When it is set, BuildBinary uses that file instead of building.
const BinaryEnv = "RAFTKV_BIN"

// RaceEnv names the environment variable that, when set to "1", makes
// BuildBinary build the server with the race detector. A server that hits a
// data race then exits non-zero, which Stop reports.
const RaceEnv = "RAFTKV_BIN_RACE"

// Timeouts used by the harness. They are generous on purpose: the machines
// that run these tests are small and shared.
const (
	// LiveTimeout bounds how long a started process may take to answer /livez.
	LiveTimeout = 20 * time.Second
	// ReadyTimeout bounds how long a cluster may take to converge.
	ReadyTimeout = 45 * time.Second
	// StopTimeout bounds how long a node may take to exit after SIGTERM.
	StopTimeout = 30 * time.Second
	// RequestTimeout is the client-side limit on any single HTTP request.
	RequestTimeout = 20 * time.Second
	// pollInterval is how often WaitFor re-checks a condition.
	pollInterval = 50 * time.Millisecond
	// startAttempts is how many times a start is retried on a port clash.
	startAttempts = 4
	// logTailLines is how much of each node log is shown on failure.
	logTailLines = 80
)

// Binary is the raftkv executable that new clusters run. Set it with
// BuildBinary (TestMain does) before calling StartCluster.
var Binary string

// TB is the part of testing.TB the harness needs. *testing.T and *testing.B
// satisfy it; a standalone tool can provide its own implementation.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Cleanup(func())
	TempDir() string
}

// BuildBinary returns the path of a raftkv binary. If RAFTKV_BIN is set it is
// used as is; otherwise the server is built into dir with `go build`.
func BuildBinary(dir string) (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinaryEnv, p, err)
		}
		return abs, nil
	}
	out := filepath.Join(dir, "raftkv")
	args := []string{"build", "-o", out}
	if os.Getenv(RaceEnv) == "1" {
		args = append(args, "-race")
	}
	args = append(args, "github.com/raftkv/raftkv/cmd/raftkv")
	cmd := exec.Command("go", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// httpClient is shared by every helper. Keep-alive connections to a killed
// node simply fail and are dropped by the transport.
var httpClient = &http.Client{
	Timeout: RequestTimeout,
	Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	},
}

// Ports handed out by FreeAddr in this process, so two nodes never get the same one.
var (
	portMu    sync.Mutex
	usedPorts = map[int]bool{}
)

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago.
// Something else may still take it before the node binds; starts retry.
func FreeAddr() (string, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portMu.Lock()
		fresh := !usedPorts[port]
		usedPorts[port] = true
		portMu.Unlock()
		if fresh {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
		}
	}
	return "", errors.New("no unused port found")
}

// Config describes a cluster to start.
type Config struct {
	// Nodes is how many nodes to run (node1..nodeN). node1 bootstraps.
	Nodes int
	// Shards is passed as --shards to the bootstrapping node.
	Shards int
	// ExtraArgs are added to every node's command line.
	ExtraArgs []string
}

// Cluster is a set of raftkv processes started by this harness.
type Cluster struct {
	Nodes []*Node

	tb     TB
	bin    string
	dir    string
	shards int
}

// Node is one raftkv process (or the memory of one, while it is down).
// Fields may be changed between runs, e.g. to give a node new ports before
// Restart.
type Node struct {
	ID       string
	HTTPAddr string
	RaftAddr string
	DataDir  string
	LogPath  string
	// Join is passed as --join when non-empty.
	Join []string
	// Args are extra flags for this node.
	Args []string

	c  *Cluster
	mu sync.Mutex
	// cmd and done describe the current (or last) process; done is closed
	// once it has exited and been reaped.
	cmd  *exec.Cmd
	done chan struct{}
	// expectExit is set while Stop or Kill is ending the process, so the
	// cleanup can tell an expected exit from a crash.
	expectExit bool
}

// StartCluster starts an n-node cluster with the given shard count and waits
// until every node is ready and a voter of every group.
func StartCluster(tb TB, n, shards int) *Cluster {
	tb.Helper()
	return StartClusterWith(tb, Config{Nodes: n, Shards: shards})
}

// StartClusterWith is StartCluster with more options.
func StartClusterWith(tb TB, cfg Config) *Cluster {
	tb.Helper()
	if Binary == "" {
		tb.Fatalf("systemtest: Binary is not set; call BuildBinary first")
	}
	if cfg.Nodes < 1 {
		tb.Fatalf("systemtest: need at least one node")
	}
	c := &Cluster{tb: tb, bin: Binary, dir: tb.TempDir(), shards: cfg.Shards}
	// Registered after TempDir, so it runs before the directory is removed.
	tb.Cleanup(c.cleanup)

	for i := 1; i <= cfg.Nodes; i++ {
		n := &Node{
			ID:   fmt.Sprintf("node%d", i),
			Args: slices.Clone(cfg.ExtraArgs),
			c:    c,
		}
		n.DataDir = filepath.Join(c.dir, n.ID)
		n.LogPath = filepath.Join(c.dir, n.ID+".log")
		if i > 1 {
			n.Join = []string{c.Nodes[0].HTTPAddr}
		}
		if err := n.StartFresh(); err != nil {
			tb.Fatalf("start %s: %v", n.ID, err)
		}
		c.Nodes = append(c.Nodes, n)
		if i == 1 {
			// Let the bootstrap node elect itself everywhere before anyone
			// asks it to add them.
			if err := c.WaitConverged(ReadyTimeout, n); err != nil {
				tb.Fatalf("bootstrap node not ready: %v", err)
			}
		}
	}
	if err := c.WaitConverged(ReadyTimeout, c.Nodes...); err != nil {
		tb.Fatalf("cluster did not converge: %v", err)
	}
	return c
}

// Node returns the node with the given id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Running returns the nodes whose process is up.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// WaitConverged waits until every given node answers /readyz with 200 and
// its own /v1/cluster lists exactly the given nodes as the voters of every
// group, with shard-1..shard-N all present.
func (c *Cluster) WaitConverged(timeout time.Duration, nodes ...*Node) error {
	want := make([]string, 0, len(nodes))
	for _, n := range nodes {
		want = append(want, n.ID)
	}
	slices.Sort(want)
	return WaitFor(timeout, func() error {
		for _, n := range nodes {
			if err := n.Ready(); err != nil {
				return err
			}
			st, err := n.Status()
			if err != nil {
				return err
			}
			if err := checkVoters(st, want, c.shards); err != nil {
				return fmt.Errorf("%s's view: %w", n.ID, err)
			}
		}
		return nil
	})
}

func checkVoters(st *ClusterStatus, want []string, shards int) error {
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

// LeaderOf returns the node that leads group. It asks the running nodes who
// the leader is and then checks that the named node, asked itself, agrees.
func (c *Cluster) LeaderOf(group string) (*Node, error) {
	var lastErr error = errors.New("no running node")
	for _, n := range c.Running() {
		st, err := n.Status()
		if err != nil {
			lastErr = err
			continue
		}
		g := st.Group(group)
		if g == nil {
			lastErr = fmt.Errorf("%s does not know group %s", n.ID, group)
			continue
		}
		if g.Leader == "" {
			lastErr = fmt.Errorf("%s sees no leader for %s", n.ID, group)
			continue
		}
		l := c.byIDOrAddr(g.Leader)
		if l == nil || !l.Running() {
			lastErr = fmt.Errorf("%s names %q as leader of %s, which is not a running node", n.ID, g.Leader, group)
			continue
		}
		lst, err := l.Status()
		if err != nil {
			lastErr = err
			continue
		}
		if lg := lst.Group(group); lg == nil || c.byIDOrAddr(lg.Leader) != l {
			lastErr = fmt.Errorf("%s does not think it leads %s", l.ID, group)
			continue
		}
		return l, nil
	}
	return nil, lastErr
}

// WaitLeaderOf polls LeaderOf until it succeeds or timeout passes.
func (c *Cluster) WaitLeaderOf(group string, timeout time.Duration) (*Node, error) {
	var leader *Node
	err := WaitFor(timeout, func() error {
		l, err := c.LeaderOf(group)
		leader = l
		return err
	})
	return leader, err
}

// byIDOrAddr finds a node by id, raft address or HTTP address: the leader
// field is documented loosely, so accept any of them.
func (c *Cluster) byIDOrAddr(s string) *Node {
	for _, n := range c.Nodes {
		if s == n.ID || s == n.RaftAddr || s == n.HTTPAddr {
			return n
		}
	}
	return nil
}

// cleanup kills every process this cluster started (by PID), then, if the
// test failed, shows the tail of every node log. A node log with a Go panic
// or a data race report fails the test.
func (c *Cluster) cleanup() {
	for _, n := range c.Nodes {
		n.mu.Lock()
		cmd, done, expected := n.cmd, n.done, n.expectExit
		n.mu.Unlock()
		if cmd != nil && !expected {
			select {
			case <-done:
				c.tb.Logf("%s (pid %d) exited on its own: %s", n.ID, cmd.Process.Pid, cmd.ProcessState)
			default:
			}
		}
		if err := n.Kill(); err != nil {
			c.tb.Errorf("cleanup: %v", err)
		}
	}
	for _, n := range c.Nodes {
		if bad := n.crashLines(); bad != "" {
			c.tb.Errorf("%s log shows a crash:\n%s", n.ID, bad)
		}
	}
	if c.tb.Failed() {
		for _, n := range c.Nodes {
			c.tb.Logf("---- last %d lines of %s (%s) ----\n%s", logTailLines, n.ID, n.LogPath, n.LogTail(logTailLines))
		}
	}
}

// Running reports whether the node's process is up.
func (n *Node) Running() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
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

// PID returns the process id of the current process, or 0.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

func (n *Node) args() []string {
	a := []string{"serve",
		"--id", n.ID,
		"--data-dir", n.DataDir,
		"--http-addr", n.HTTPAddr,
		"--raft-addr", n.RaftAddr,
	}
	if len(n.Join) > 0 {
		a = append(a, "--join", strings.Join(n.Join, ","))
	} else if n.c.shards > 0 {
		a = append(a, "--shards", strconv.Itoa(n.c.shards))
	}
	return append(a, n.Args...)
}

// StartFresh starts a node that has no state yet, on newly picked ports. On
// a port clash it wipes the data dir, picks other ports and tries again.
func (n *Node) StartFresh() error {
	var err error
	for range startAttempts {
		if n.HTTPAddr, err = FreeAddr(); err != nil {
			return err
		}
		if n.RaftAddr, err = FreeAddr(); err != nil {
			return err
		}
		if err = os.RemoveAll(n.DataDir); err != nil {
			return err
		}
		if err = n.launch(); !errors.Is(err, errPortClash) {
			return err
		}
	}
	return err
}

// Restart starts the node again on its current addresses and data dir (it
// must be down) and waits until it answers /livez. Readiness is the caller's
// business: a node alone cannot be ready without its peers.
func (n *Node) Restart() error {
	if n.Running() {
		return fmt.Errorf("%s: restart while running", n.ID)
	}
	var err error
	for i := range startAttempts {
		if err = n.launch(); !errors.Is(err, errPortClash) {
			return err
		}
		time.Sleep(time.Duration(i+1) * 250 * time.Millisecond) // back off; the port may free up
	}
	return err
}

var errPortClash = errors.New("address already in use")

// launch starts the process and waits for /livez.
func (n *Node) launch() error {
	if err := os.MkdirAll(filepath.Dir(n.LogPath), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := n.args()
	fmt.Fprintf(logf, "==== systemtest: %s start %s %s\n", time.Now().Format(time.RFC3339Nano), n.c.bin, strings.Join(args, " "))
	cmd := exec.Command(n.c.bin, args...)
	// If the test process dies without running its cleanups (a panic, a
	// go test timeout), the kernel ends the nodes it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", n.ID, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		logf.Close()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done, n.expectExit = cmd, done, false
	n.mu.Unlock()

	err = WaitFor(LiveTimeout, func() error {
		select {
		case <-done:
			return errExited
		default:
		}
		return n.Live()
	})
	if err == nil {
		return nil
	}
	select {
	case <-done:
		out := n.lastRunLog()
		if strings.Contains(out, "address already in use") {
			return fmt.Errorf("%s: %w", n.ID, errPortClash)
		}
		return fmt.Errorf("%s exited during start (%s):\n%s", n.ID, cmd.ProcessState, tail(out, 30))
	default:
		_ = n.Kill()
		return fmt.Errorf("%s: no /livez within %s: %v", n.ID, LiveTimeout, err)
	}
}

var errExited = errors.New("process exited")

// cleanEnv drops RAFTKV_* variables so the caller's environment cannot
// change the flags the harness passes.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAFTKV_") {
			env = append(env, kv)
		}
	}
	return env
}

func (n *Node) current() (*exec.Cmd, chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd, n.done
}

// Kill sends SIGKILL to the node's process and waits until it is reaped.
// Killing a node that is down is a no-op.
func (n *Node) Kill() error {
	cmd, done := n.current()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	n.mu.Lock()
	n.expectExit = true
	n.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", n.ID, cmd.Process.Pid, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) still running 10s after SIGKILL", n.ID, cmd.Process.Pid)
	}
}

// Stop sends SIGTERM and waits for the process to exit; anything but exit
// code 0 within StopTimeout is an error.
func (n *Node) Stop() error {
	cmd, done := n.current()
	if cmd == nil {
		return fmt.Errorf("%s was never started", n.ID)
	}
	select {
	case <-done:
		return fmt.Errorf("%s had already exited (%s)", n.ID, cmd.ProcessState)
	default:
	}
	n.mu.Lock()
	n.expectExit = true
	n.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM %s (pid %d): %w", n.ID, cmd.Process.Pid, err)
	}
	select {
	case <-done:
	case <-time.After(StopTimeout):
		_ = n.Kill()
		return fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM", n.ID, cmd.Process.Pid, StopTimeout)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with %s after SIGTERM; log tail:\n%s", n.ID, cmd.ProcessState, tail(n.lastRunLog(), 20))
	}
	return nil
}

// lastRunLog returns the log written since the most recent start.
func (n *Node) lastRunLog() string {
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndex(s, "==== systemtest: "); i >= 0 {
		s = s[i:]
	}
	return s
}

// LogTail returns the last lines of the node's log (all runs).
func (n *Node) LogTail(lines int) string {
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return tail(string(b), lines)
}

func tail(s string, lines int) string {
	s = strings.TrimRight(s, "\n")
	idx := len(s)
	for range lines {
		i := strings.LastIndexByte(s[:idx], '\n')
		if i < 0 {
			return s
		}
		idx = i
	}
	return s[idx+1:]
}

// crashLines returns log lines that show a Go panic, a fatal runtime error
// or a race report, with a little context.
func (n *Node) crashLines() string {
	f, err := os.Open(n.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	context := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") ||
			strings.Contains(line, "WARNING: DATA RACE") {
			context = 25
		}
		if context > 0 {
			out = append(out, line)
			context--
		}
	}
	return strings.Join(out, "\n")
}

// URL returns the full URL for a path (with query) on this node.
func (n *Node) URL(pathAndQuery string) string {
	return "http://" + n.HTTPAddr + pathAndQuery
}

// Response is a fully read HTTP response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *Response) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// Do sends one request to the node. headers are name, value pairs.
func (n *Node) Do(method, pathAndQuery string, body []byte, headers ...string) (*Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, n.URL(pathAndQuery), rd)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading body: %w", method, pathAndQuery, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// KeyPath returns /v1/kv/<escaped key>.
func KeyPath(key string) string {
	return "/v1/kv/" + url.PathEscape(key)
}

// Live returns nil when GET /livez answers 200.
func (n *Node) Live() error { return n.expect200("/livez") }

// Ready returns nil when GET /readyz answers 200.
func (n *Node) Ready() error { return n.expect200("/readyz") }

func (n *Node) expect200(path string) error {
	r, err := n.Do(http.MethodGet, path, nil)
	if err != nil {
		return fmt.Errorf("%s %s: %w", n.ID, path, err)
	}
	if r.Status != http.StatusOK {
		return fmt.Errorf("%s %s: %s", n.ID, path, r)
	}
	return nil
}

// ClusterStatus is the body of GET /v1/cluster.
type ClusterStatus struct {
	ClusterID string        `json:"cluster_id"`
	Shards    int           `json:"shards"`
	Nodes     []NodeInfo    `json:"nodes"`
	Groups    []GroupStatus `json:"groups"`
}

// NodeInfo is one entry of the node registry.
type NodeInfo struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
}

// GroupStatus is one raft group as a node sees it.
type GroupStatus struct {
	Name              string     `json:"name"`
	Leader            string     `json:"leader"`
	Term              uint64     `json:"term"`
	CommitIndex       uint64     `json:"commit_index"`
	AppliedIndex      uint64     `json:"applied_index"`
	LastSnapshotIndex uint64     `json:"last_snapshot_index"`
	Voters            memberList `json:"voters"`
	Nonvoters         memberList `json:"nonvoters"`
}

// memberList decodes a list of node ids given either as strings or as
// objects with an "id" field.
type memberList []string

func (m *memberList) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(memberList, 0, len(raw))
	for _, r := range raw {
		var s string
		if err := json.Unmarshal(r, &s); err == nil {
			out = append(out, s)
			continue
		}
		var obj struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r, &obj); err != nil {
			return fmt.Errorf("member %s: %w", r, err)
		}
		out = append(out, obj.ID)
	}
	*m = out
	return nil
}

// Group returns the named group, or nil.
func (s *ClusterStatus) Group(name string) *GroupStatus {
	for i := range s.Groups {
		if s.Groups[i].Name == name {
			return &s.Groups[i]
		}
	}
	return nil
}

// Node returns the registry entry for id, or nil.
func (s *ClusterStatus) Node(id string) *NodeInfo {
	for i := range s.Nodes {
		if s.Nodes[i].ID == id {
			return &s.Nodes[i]
		}
	}
	return nil
}

// Status fetches GET /v1/cluster from this node.
func (n *Node) Status() (*ClusterStatus, error) {
	r, err := n.Do(http.MethodGet, "/v1/cluster", nil)
	if err != nil {
		return nil, fmt.Errorf("%s /v1/cluster: %w", n.ID, err)
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("%s /v1/cluster: %s", n.ID, r)
	}
	var st ClusterStatus
	if err := json.Unmarshal(r.Body, &st); err != nil {
		return nil, fmt.Errorf("%s /v1/cluster: %w in %s", n.ID, err, r.Body)
	}
	return &st, nil
}

// WaitFor calls cond until it returns nil or timeout passes, and then
// returns the last error it saw.
func WaitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %s: %w", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}
