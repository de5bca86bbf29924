package nodeproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node is one raftkv node and, when this package started it, its process
// (or the memory of one, while it is down). The exported fields may be
// changed while the node is down, e.g. to give it new ports or a new --join
// before a start; nothing else may read them meanwhile.
type Node struct {
	ID       string
	HTTPAddr string
	RaftAddr string
	DataDir  string
	LogPath  string
	// Join is passed as --join when non-empty; without it the node gets the
	// cluster's --shards (used only when it bootstraps).
	Join []string
	// Args are extra flags for this node.
	Args []string
	// TLS, when set, runs the node with transport security from these
	// files (see TLSFiles); a node of a cluster started with Options.TLS
	// gets a certificate of its CA at its first start if it has none.
	TLS *TLSFiles
	// Wrap, when set, is a command the binary runs under, e.g. `ip netns
	// exec NS`. It must exec the binary in place so that the PID stays the
	// node's.
	Wrap []string

	c *Cluster
	// mu guards cmd, done, paused, expectExit and the TLS probe client.
	mu sync.Mutex
	// cmd and done describe the current (or last) process; done is closed
	// once it has exited and been reaped.
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
	// expectExit is set while Stop or Kill is ending the process, so Close
	// can tell an expected exit from a crash.
	expectExit bool
	// probeTLS is the probe client made for the TLSFiles probeFor.
	probeTLS *http.Client
	probeFor *TLSFiles
}

// logMarker starts the line written to the node log before every start.
const logMarker = "==== nodeproc: "

func (n *Node) current() (*exec.Cmd, chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd, n.done
}

func exited(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Running reports whether the node's process is up (paused counts as up).
func (n *Node) Running() bool {
	_, done := n.current()
	return done != nil && !exited(done)
}

// Paused reports whether the process was stopped with SIGSTOP.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Up reports whether the node should answer: its process runs and is not
// paused. Every node of an attached cluster counts as up.
func (n *Node) Up() bool {
	return n.c.attached || (n.Running() && !n.Paused())
}

// PID returns the process id of the current process, or 0.
func (n *Node) PID() int {
	cmd, _ := n.current()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	return cmd.Process.Pid
}

// PickPorts gives the node new free 127.0.0.1 HTTP and raft ports.
func (n *Node) PickPorts() error {
	h, err := FreeAddr()
	if err != nil {
		return err
	}
	r, err := FreeAddr()
	if err != nil {
		return err
	}
	n.HTTPAddr, n.RaftAddr = h, r
	return nil
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
	} else if n.c.Shards > 0 {
		// A cluster the harness creates is on fresh ports no cluster
		// lists; a short wait for one keeps every test's start quick.
		// A test about the wait passes its own --bootstrap-wait in Args.
		a = append(a, "--shards", strconv.Itoa(n.c.Shards), "--bootstrap-wait", "500ms")
	}
	if n.TLS != nil {
		a = append(a, n.TLS.args()...)
	}
	return append(a, n.Args...)
}

// Restart starts the node again on its addresses and data dir (it must be
// down) and waits until it answers /livez. Readiness is the caller's
// business: a node alone cannot be ready without its peers.
func (n *Node) Restart() error { return n.start(false, false) }

// StartFresh wipes the node's data dir and starts it on its addresses (with
// Join, if set), waiting for /livez like Restart.
func (n *Node) StartFresh() error { return n.start(true, false) }

// StartFreshUnanswered is StartFresh for a node that is expected never to
// answer /livez, such as one whose cluster refuses it while it looks for
// the cluster to join: it returns once the process runs. Kill or Close
// ends it.
func (n *Node) StartFreshUnanswered() error {
	if n.Running() {
		return fmt.Errorf("%s: start while running", n.ID)
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		return err
	}
	return n.launch(false)
}

// start launches the node, retrying a few times on a port clash: on newly
// picked ports when newPorts, else on the same ones after a pause (a port
// the node held a moment ago may still be in use). fresh wipes the data
// dir before every attempt.
func (n *Node) start(fresh, newPorts bool) error {
	if n.Running() {
		return fmt.Errorf("%s: start while running", n.ID)
	}
	var err error
	for i := range startAttempts {
		if newPorts {
			if err = n.PickPorts(); err != nil {
				return err
			}
		}
		if fresh {
			if err = os.RemoveAll(n.DataDir); err != nil {
				return err
			}
		}
		if err = n.launch(true); !errors.Is(err, errPortClash) {
			return err
		}
		if !newPorts {
			time.Sleep(time.Duration(i+1) * 250 * time.Millisecond)
		}
	}
	return err
}

var (
	errPortClash = errors.New("address already in use")
	errExited    = errors.New("process exited")
)

// launch starts the process and, if wait, waits for /livez.
func (n *Node) launch(wait bool) error {
	if n.c.attached {
		return fmt.Errorf("%s: cannot start a node of an attached cluster", n.ID)
	}
	if n.TLS == nil && n.c.certDir != "" {
		files, err := n.c.IssueTLS(n.ID)
		if err != nil {
			return err
		}
		n.TLS = files
	}
	if err := os.MkdirAll(filepath.Dir(n.LogPath), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	argv := append(append(append([]string(nil), n.Wrap...), n.c.bin), n.args()...)
	fmt.Fprintf(logf, "%s%s start %s\n", logMarker, time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	// If the process that started the node dies without cleaning up (a
	// panic, a go test timeout, a killed chaos run), the kernel ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", n.ID, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		logf.Close()
		n.mu.Lock()
		n.paused = false
		n.mu.Unlock()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done, n.paused, n.expectExit = cmd, done, false, false
	n.mu.Unlock()
	if !wait {
		return nil
	}

	err = WaitFor(context.Background(), LiveTimeout, func() error {
		if exited(done) {
			return errExited
		}
		return n.Live(context.Background())
	})
	if err == nil {
		return nil
	}
	if exited(done) {
		out := n.lastRunLog()
		if strings.Contains(out, "address already in use") {
			return fmt.Errorf("%s: %w", n.ID, errPortClash)
		}
		return fmt.Errorf("%s exited during start (%s); log %s ends:\n%s", n.ID, cmd.ProcessState, n.LogPath, tail(out, 30))
	}
	_ = n.Kill()
	return fmt.Errorf("%s: no /livez within %s: %v (log %s)", n.ID, LiveTimeout, err, n.LogPath)
}

// signal sends sig to the current process. It reports false, and does
// nothing, when no process runs.
func (n *Node) signal(sig syscall.Signal) (bool, error) {
	cmd, done := n.current()
	if cmd == nil || exited(done) {
		return false, nil
	}
	if err := cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return false, nil
		}
		return false, fmt.Errorf("%v %s (pid %d): %w", sig, n.ID, cmd.Process.Pid, err)
	}
	return true, nil
}

func (n *Node) setExpectExit() {
	n.mu.Lock()
	n.expectExit = true
	n.mu.Unlock()
}

// Kill sends SIGKILL to the node's process and waits until it is reaped.
// Killing a node that is down is a no-op.
func (n *Node) Kill() error {
	cmd, done := n.current()
	if cmd == nil || exited(done) {
		return nil
	}
	n.setExpectExit()
	if sent, err := n.signal(syscall.SIGKILL); !sent {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(KillTimeout):
		return fmt.Errorf("%s (pid %d) still running %s after SIGKILL", n.ID, cmd.Process.Pid, KillTimeout)
	}
}

// Stop sends SIGTERM (after SIGCONT, if the node is paused) and waits for
// the process to exit; anything but exit code 0 within StopTimeout is an
// error, and a node still running then is killed.
func (n *Node) Stop() error {
	cmd, done := n.current()
	if cmd == nil {
		return fmt.Errorf("%s was never started", n.ID)
	}
	if exited(done) {
		return fmt.Errorf("%s had already exited (%s)", n.ID, cmd.ProcessState)
	}
	n.setExpectExit()
	if n.Paused() {
		if err := n.Resume(); err != nil {
			return err
		}
	}
	if _, err := n.signal(syscall.SIGTERM); err != nil {
		return err
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

// Pause stops the process with SIGSTOP. A node that is down is left alone.
func (n *Node) Pause() error {
	sent, err := n.signal(syscall.SIGSTOP)
	if sent {
		n.mu.Lock()
		n.paused = true
		n.mu.Unlock()
	}
	return err
}

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() error {
	_, err := n.signal(syscall.SIGCONT)
	if err == nil {
		n.mu.Lock()
		n.paused = false
		n.mu.Unlock()
	}
	return err
}

// exitedOnItsOwn reports a process that ended without Kill or Stop.
func (n *Node) exitedOnItsOwn() (string, bool) {
	n.mu.Lock()
	cmd, done, expected := n.cmd, n.done, n.expectExit
	n.mu.Unlock()
	if cmd == nil || expected || !exited(done) {
		return "", false
	}
	return fmt.Sprintf("%s (pid %d) exited on its own: %s", n.ID, cmd.Process.Pid, cmd.ProcessState), true
}

// lastRunLog returns the log written since the most recent start.
func (n *Node) lastRunLog() string {
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndex(s, logMarker); i >= 0 {
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

// CrashLines returns the log lines that show a Go panic, a fatal runtime
// error or a data race report, each with the 24 lines after it; "" when
// there are none (or no log).
func (n *Node) CrashLines() string {
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
