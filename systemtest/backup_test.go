package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// runCLI runs the raftkv binary with args and returns its exit code and
// combined output.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return runCommand(t, exec.Command(Binary, args...))
}

// runCommand runs cmd to its end and returns its exit code and combined
// output; a command that could not be run at all fails the test.
func runCommand(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
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

// TestBackupsDuringTransfersRestoreTheSameTotal is the bank scenario from
// the user's side: four clients move money between eight accounts spread
// over four shards, `raftkv snapshot save` runs again and again meanwhile,
// and every backup, restored with `raftkv snapshot restore` and started
// with `raftkv serve`, holds the same total when all accounts are read in
// one transaction.
func TestBackupsDuringTransfersRestoreTheSameTotal(t *testing.T) {
	skipShort(t)
	const accounts, initial, backups = 8, 100, 8
	c := StartCluster(t, 3, 4)
	var names []string
	for i := 0; i < accounts; i++ {
		names = append(names, fmt.Sprintf("bank/acct-%d", i))
	}
	setup := client.New([]string{c.Nodes[0].HTTPAddr}, client.WithTimeout(RequestTimeout))
	for _, k := range names {
		if _, err := setup.Put(t.Context(), k, []byte(strconv.Itoa(initial))); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}

	stop := make(chan struct{})
	var committed atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		cl := client.New([]string{c.Nodes[i%len(c.Nodes)].HTTPAddr}, client.WithTimeout(5*time.Second))
		rng := rand.New(rand.NewPCG(uint64(i), 11))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				from, to := rng.IntN(accounts), rng.IntN(accounts-1)
				if to >= from {
					to++
				}
				if transferOnce(t.Context(), cl, names[from], names[to], 1+rng.IntN(5)) {
					committed.Add(1)
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	dir := t.TempDir()
	var files []string
	for i := 0; i < backups; i++ {
		// Let some transfers commit since the last backup.
		seen := committed.Load()
		if err := WaitFor(time.Minute, func() error {
			if committed.Load() < seen+5 {
				return fmt.Errorf("only %d transfers committed", committed.Load())
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, fmt.Sprintf("backup-%d.tar", i))
		if code, out := runCLI(t, "snapshot", "save", file, "--endpoints", c.Nodes[i%len(c.Nodes)].HTTPAddr); code != 0 {
			t.Fatalf("snapshot save %d: exit %d: %s", i, code, out)
		}
		files = append(files, file)
	}
	t.Logf("%d transfers committed while %d backups were taken", committed.Load(), backups)

	for i, file := range files {
		code, out := runCLI(t, "snapshot", "inspect", file)
		if code != 0 || !strings.Contains(out, "Transactions:") {
			t.Fatalf("inspect %s: exit %d: %s", file, code, out)
		}
		if i := strings.Index(out, "Transactions:"); i >= 0 {
			t.Logf("%s: %s", filepath.Base(file), strings.SplitN(out[i:], "\n", 2)[0])
		}
		n := c.AddNode(fmt.Sprintf("restored%d", i))
		if err := n.PickPorts(); err != nil {
			t.Fatal(err)
		}
		if code, out := runCLI(t, "snapshot", "restore", file, "--data-dir", n.DataDir, "--id", n.ID,
			"--raft-addr", n.RaftAddr, "--http-addr", n.HTTPAddr); code != 0 {
			t.Fatalf("restore %s: exit %d: %s", file, code, out)
		}
		if err := n.Restart(); err != nil {
			t.Fatalf("start the node restored from %s: %v", file, err)
		}
		if err := WaitFor(ReadyTimeout, func() error { return n.Ready(t.Context()) }); err != nil {
			t.Fatalf("node restored from %s not ready: %v", file, err)
		}
		read := clientOf(n)
		var total int
		var balances []string
		if err := WaitFor(ReadyTimeout, func() error {
			txn := client.Txn{}
			for _, k := range names {
				txn.Success = append(txn.Success, client.GetOp(k))
			}
			res, err := read.Txn(t.Context(), txn)
			if err != nil {
				return err
			}
			total, balances = 0, nil
			for _, r := range res.Results {
				v, err := strconv.Atoi(string(r.Value))
				if err != nil {
					return fmt.Errorf("%s = %q: %v", r.Key, r.Value, err)
				}
				total += v
				balances = append(balances, string(r.Value))
			}
			return nil
		}); err != nil {
			t.Fatalf("read every account from the node restored from %s: %v", file, err)
		}
		if total != accounts*initial {
			t.Errorf("backup %s restores a total of %d (%s), want %d\n%s", file, total, strings.Join(balances, " "), accounts*initial, out)
		}
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
	}
}

// clientOf returns a client of node n.
func clientOf(n *Node) *client.Client {
	return client.New([]string{n.HTTPAddr}, client.WithTimeout(5*time.Second))
}

// transferOnce moves amount from one account to another with one
// transaction guarded by both balances, and reports whether it committed.
func transferOnce(ctx context.Context, c *client.Client, from, to string, amount int) bool {
	res, err := c.Txn(ctx, client.Txn{Success: []client.TxnOp{client.GetOp(from), client.GetOp(to)}})
	if err != nil || len(res.Results) != 2 {
		return false
	}
	a, errA := strconv.Atoi(string(res.Results[0].Value))
	b, errB := strconv.Atoi(string(res.Results[1].Value))
	if errA != nil || errB != nil {
		return false
	}
	res, err = c.Txn(ctx, client.Txn{
		Compare: []client.TxnCompare{
			client.CompareValue(from, "==", res.Results[0].Value),
			client.CompareValue(to, "==", res.Results[1].Value),
		},
		Success: []client.TxnOp{
			client.PutOp(from, []byte(strconv.Itoa(a-amount))),
			client.PutOp(to, []byte(strconv.Itoa(b+amount))),
		},
	})
	return err == nil && res.Succeeded
}
