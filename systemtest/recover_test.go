package systemtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRecoverAfterLosingTheMajority loses two of three nodes for good,
// recovers the third offline with `raftkv recover`, and checks that it
// serves every write it had, takes new ones, and grows again with two
// fresh nodes.
func TestRecoverAfterLosingTheMajority(t *testing.T) {
	skipShort(t)
	c := StartCluster(t, 3, 2)
	survivor, lost := c.Nodes[0], c.Nodes[1:]
	acked := map[string]string{}
	for i := range 40 {
		k, v := fmt.Sprintf("recover/%02d", i), fmt.Sprintf("v%d", i)
		if r := mustDo(t, c.Nodes[i%3], http.MethodPut, KeyPath(k), []byte(v)); r.Status != http.StatusOK {
			t.Fatalf("write %s: %s", k, r)
		}
		acked[k] = v
	}
	// Every write reaches the survivor before the others go: an
	// acknowledged write that only the lost nodes held would be lost, by
	// design.
	mustOK(t, WaitFor(ReadyTimeout, func() error {
		for k, v := range acked {
			if err := checkValue(survivor, k, v, "stale"); err != nil {
				return err
			}
		}
		return nil
	}))

	for _, n := range lost {
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	// Without a majority, writes cannot commit.
	if r, err := Do(survivor, http.MethodPut, KeyPath("recover/no-quorum")+"?timeout=1s", []byte("x")); err == nil && r.Status == http.StatusOK {
		t.Fatalf("a write committed with two of three nodes gone: %s", r)
	}
	peers := filepath.Join(t.TempDir(), "peers.json")
	mustOK(t, os.WriteFile(peers, []byte(`[{"id":"`+survivor.ID+`"}]`), 0o644))

	// The data dir is in use while the node runs: recover refuses.
	if code, out := runCLI(t, "recover", "--data-dir", survivor.DataDir, "--peers", peers); code == 0 || !strings.Contains(out, "stop the node first") {
		t.Fatalf("recover of a running node's data dir: exit %d: %s", code, out)
	}
	if err := survivor.Stop(); err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, "recover", "--data-dir", survivor.DataDir, "--peers", peers, "-o", "json")
	if code != 0 {
		t.Fatalf("recover: exit %d: %s", code, out)
	}
	var rep struct {
		Removed []string `json:"removed"`
		Groups  []struct {
			Name string `json:"name"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Removed) != 2 || len(rep.Groups) != 1+c.Shards {
		t.Fatalf("recover report: %v\n%s", err, out)
	}

	if err := survivor.Restart(); err != nil {
		t.Fatal(err)
	}
	mustOK(t, c.WaitConverged(t.Context(), ReadyTimeout, survivor))
	verifyAll(t, []*Node{survivor}, acked, "linearizable")
	st, err := survivor.Status(t.Context())
	mustOK(t, err)
	if len(st.Nodes) != 1 || st.Nodes[0].ID != survivor.ID {
		t.Fatalf("the registry after recovery lists %+v, want only %s", st.Nodes, survivor.ID)
	}
	if r := mustDo(t, survivor, http.MethodPut, KeyPath("recover/after"), []byte("new")); r.Status != http.StatusOK {
		t.Fatalf("write after recovery: %s", r)
	}
	acked["recover/after"] = "new"

	// Two fresh nodes join the recovered one; all three serve everything.
	fresh := []*Node{c.AddNode("node4"), c.AddNode("node5")}
	all := []*Node{survivor}
	for _, n := range fresh {
		n.Join = []string{survivor.HTTPAddr}
		mustOK(t, n.PickPorts())
		if err := n.StartFresh(); err != nil {
			t.Fatalf("start %s: %v", n.ID, err)
		}
		all = append(all, n)
		mustOK(t, c.WaitConverged(t.Context(), ReadyTimeout, all...))
	}
	verifyAll(t, all, acked, "linearizable")
	// And the new three-node cluster survives losing one of them.
	if err := survivor.Kill(); err != nil {
		t.Fatal(err)
	}
	mustOK(t, WaitFor(20*time.Second, func() error {
		r, err := Do(fresh[0], http.MethodPut, KeyPath("recover/after-kill"), []byte("x"))
		if err != nil {
			return err
		}
		if r.Status != http.StatusOK {
			return fmt.Errorf("write after killing %s: %s", survivor.ID, r)
		}
		return nil
	}))
}
