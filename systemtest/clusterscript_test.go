package systemtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// freeRun returns the first of n consecutive free 127.0.0.1 ports, holding
// none of them.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for base := 21000 + os.Getpid()%2000*4; base < 60000; base += 7 {
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no run of free ports")
	return 0
}

// clusterScript runs scripts/cluster.sh with a folder and ports of its own.
func clusterScript(t *testing.T, dir string, httpBase, raftBase int, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join("..", "scripts", "cluster.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "RAFTKV_CLUSTER_DIR="+dir,
		"RAFTKV_BASE_HTTP="+strconv.Itoa(httpBase), "RAFTKV_BASE_RAFT="+strconv.Itoa(raftBase))
	return runCommand(t, cmd)
}

// scriptFolder gives a test of scripts/cluster.sh a folder and a run of
// free ports of its own, and stops whatever the script started there when
// the test ends.
func scriptFolder(t *testing.T) (dir string, httpBase, raftBase int) {
	t.Helper()
	skipShort(t)
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	base := freeRun(t, 6)
	httpBase, raftBase = base, base+3
	dir = t.TempDir()
	t.Cleanup(func() { clusterScript(t, dir, httpBase, raftBase, "down") })
	return dir, httpBase, raftBase
}

// liveNodes lists the nodes of the script's folder whose recorded process
// is still alive.
func liveNodes(dir string) []string {
	var live []string
	files, _ := filepath.Glob(filepath.Join(dir, "node*", "raftkv.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
			live = append(live, filepath.Base(filepath.Dir(f)))
		}
	}
	return live
}

// TestClusterScriptLeavesNothingRunningWhenItsPortsAreTaken: the README's
// `scripts/cluster.sh up 3` next to something already on its ports (the
// quick-start node) refuses, naming what holds the port, and a failure
// after node1 started stops node1 again.
func TestClusterScriptLeavesNothingRunningWhenItsPortsAreTaken(t *testing.T) {
	dir, httpBase, raftBase := scriptFolder(t)

	// Something else listens on node1's HTTP port.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", httpBase))
	if err != nil {
		t.Fatal(err)
	}
	code, out := clusterScript(t, dir, httpBase, raftBase, "up", "3")
	ln.Close()
	if code == 0 || !strings.Contains(out, fmt.Sprintf("cannot start node1: 127.0.0.1:%d is in use", httpBase)) {
		t.Fatalf("up with node1's port taken: exit %d:\n%s", code, out)
	}
	if live := liveNodes(dir); len(live) != 0 {
		t.Fatalf("the failed up left %v running", live)
	}

	// node2's raft port is taken: node1 starts, node2 cannot, node1 is stopped.
	ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", raftBase+1))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, out = clusterScript(t, dir, httpBase, raftBase, "up", "3")
	if code == 0 || !strings.Contains(out, "cannot start node2") || !strings.Contains(out, "stopping the nodes it started: node1") {
		t.Fatalf("up with node2's port taken: exit %d:\n%s", code, out)
	}
	if live := liveNodes(dir); len(live) != 0 {
		t.Fatalf("the failed up left %v running", live)
	}
}

// TestClusterScriptRestartOfARemovedNodeSaysHowItComesBack: node3 leaves a
// script cluster; `restart node3` on its old data no longer waits out the
// readiness timeout to say "not ready": it says the node was removed,
// stops it again and prints the way back. Following it makes node3 a
// member again.
func TestClusterScriptRestartOfARemovedNodeSaysHowItComesBack(t *testing.T) {
	dir, httpBase, raftBase := scriptFolder(t)
	if code, out := clusterScript(t, dir, httpBase, raftBase, "up", "3"); code != 0 {
		t.Fatalf("up 3: exit %d:\n%s", code, out)
	}
	node1 := fmt.Sprintf("127.0.0.1:%d", httpBase)
	leave := exec.Command(filepath.Join(dir, "raftkv"), "cluster", "leave", "node3", "--endpoints", node1)
	if code, out := runCommand(t, leave); code != 0 {
		t.Fatalf("leave node3: exit %d:\n%s", code, out)
	}

	code, out := clusterScript(t, dir, httpBase, raftBase, "restart", "node3")
	data := filepath.Join(dir, "node3", "data")
	for _, want := range []string{"node3 was removed from the cluster", "rm -rf " + data, "restart node3", "stopped it again"} {
		if !strings.Contains(out, want) {
			t.Errorf("restart of the removed node3 does not say %q:\n%s", want, out)
		}
	}
	if code == 0 || strings.Contains(out, "not ready after") {
		t.Errorf("restart of the removed node3: exit %d, want a failure that is not the readiness timeout:\n%s", code, out)
	}
	if live := liveNodes(dir); len(live) != 2 {
		t.Errorf("after restarting the removed node3, running: %v; want node1 and node2 only", live)
	}

	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if code, out := clusterScript(t, dir, httpBase, raftBase, "restart", "node3"); code != 0 || !strings.Contains(out, "node3 is ready") {
		t.Fatalf("restart of node3 with its data wiped: exit %d:\n%s", code, out)
	}
}
