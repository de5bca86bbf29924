package systemtest

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the raftkv binary with args and returns its exit code and
// combined output.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(Binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return 0, out.String()
}

// TestBackupRestoreIntoANewCluster writes data, saves a backup, destroys the
// cluster, restores the backup into a new node, grows it with a join, and
// reads every key back.
func TestBackupRestoreIntoANewCluster(t *testing.T) {
	skipShort(t)
	c := StartCluster(t, 3, 3)
	want := map[string][]byte{}
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("acct/%03d", i)
		v := []byte(fmt.Sprintf("balance-%d", i))
		if i%10 == 0 {
			v = []byte{0xff, byte(i), 0x00}
		}
		r, err := Do(c.Nodes[i%3], http.MethodPut, KeyPath(k), v)
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("put %s: %v %v", k, r, err)
		}
		want[k] = v
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.tar")
	if code, out := runCLI(t, "snapshot", "save", file, "--endpoints", c.Nodes[1].HTTPAddr); code != 0 {
		t.Fatalf("snapshot save: exit %d: %s", code, out)
	}
	code, out := runCLI(t, "snapshot", "inspect", file)
	if code != 0 || !strings.Contains(out, "shard-3") || !strings.Contains(out, "meta") {
		t.Fatalf("inspect: exit %d: %s", code, out)
	}

	// A damaged copy is refused, naming what failed, and builds nothing.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.tar")
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(bad, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runCLI(t, "snapshot", "inspect", bad); code != 1 || !strings.Contains(out, "FAILED") {
		t.Fatalf("inspect of a damaged backup: exit %d: %s", code, out)
	}
	badDir := filepath.Join(dir, "from-bad")
	if code, out := runCLI(t, "snapshot", "restore", bad, "--data-dir", badDir, "--id", "x1",
		"--raft-addr", "127.0.0.1:1", "--http-addr", "127.0.0.1:2"); code != 1 || !strings.Contains(out, "refusing to restore") {
		t.Fatalf("restore of a damaged backup: exit %d: %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(badDir, "node.json")); !os.IsNotExist(err) {
		t.Fatalf("a refused restore left state behind: %v", err)
	}

	// Destroy the cluster.
	for _, n := range c.Nodes {
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
	}

	restored := c.AddNode("restored1")
	if err := restored.PickPorts(); err != nil {
		t.Fatal(err)
	}
	if code, out := runCLI(t, "snapshot", "restore", file, "--data-dir", restored.DataDir, "--id", restored.ID,
		"--raft-addr", restored.RaftAddr, "--http-addr", restored.HTTPAddr); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, out)
	}
	if err := restored.Restart(); err != nil {
		t.Fatalf("start restored node: %v", err)
	}
	if err := WaitFor(ReadyTimeout, func() error { return restored.Ready(t.Context()) }); err != nil {
		t.Fatalf("restored node not ready: %v", err)
	}
	checkAll := func(n *Node) {
		t.Helper()
		for k, v := range want {
			r, err := Do(n, http.MethodGet, KeyPath(k), nil)
			if err != nil || r.Status != http.StatusOK || !bytes.Equal(r.Body, v) {
				t.Fatalf("%s via %s: %v %v, want %q", k, n.ID, r, err, v)
			}
		}
	}
	checkAll(restored)

	// The restored cluster grows like any other.
	second := c.AddNode("restored2")
	second.Join = []string{restored.HTTPAddr}
	if err := second.PickPorts(); err != nil {
		t.Fatal(err)
	}
	if err := second.StartFresh(); err != nil {
		t.Fatalf("start second node: %v", err)
	}
	if err := c.WaitConverged(t.Context(), ReadyTimeout, restored, second); err != nil {
		t.Fatalf("restored cluster did not converge: %v", err)
	}
	checkAll(second)
	r, err := Do(second, http.MethodPut, KeyPath("after-restore"), []byte("new"))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("write after restore: %v %v", r, err)
	}
}
