package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/logstore"
	"github.com/raftkv/raftkv/raftkvtest"
	"github.com/raftkv/raftkv/registry"
)

// leadEverything makes node i the leader of every group.
func leadEverything(t *testing.T, c *raftkvtest.Cluster, i int) {
	t.Helper()
	for _, g := range raftkvtest.Groups(1) {
		raftkvtest.Eventually(t, 20*time.Second, func() error {
			if c.Leader(g) == i {
				return nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := c.Nodes[i].TransferLeadership(ctx, g, c.Nodes[i].ID)
			return fmt.Errorf("%s not led by %s yet (transfer: %v)", g, c.Nodes[i].ID, err)
		})
	}
}

// TestAWipedVoterCannotHelpElectALeaderThatLacksAnAcknowledgedWrite is
// the wiped-disk scenario of issue 11 with a partition:
//  1. node1 leads; a write W is acknowledged by node1 and node2 while node3
//     is cut off, so node3 lacks it;
//  2. node2's disk is wiped and it restarts with --join (through node3,
//     which cannot reach the leader, so the join waits);
//  3. node1 dies before the join is processed;
//  4. node3 can reach node2 again and campaigns.
//
// raft grants votes from an empty configuration, so the wiped node2 would
// make node3 leader and W would be gone. node3 knows node2 by the
// incarnation of its old data, so the wiped node2 (a new incarnation)
// refuses node3's connections and node3 cannot win. When node1 comes back,
// W is still there and node2 is removed and added again.
func TestAWipedVoterCannotHelpElectALeaderThatLacksAnAcknowledgedWrite(t *testing.T) {
	c := raftkvtest.NewStreamCluster(t, 3, 1, nil)
	leadEverything(t, c, 0)
	c.Disconnect(2)
	if r := raftkvtest.Put(c.Nodes[0].HTTPAddr, "w", "acknowledged"); r.Status != http.StatusOK {
		t.Fatalf("write W: %d %s", r.Status, r.Body)
	}
	c.Stop(1)
	c.RestartWiped(1) // joins through node3, which cannot reach a leader
	c.Stop(0)
	c.Heal()

	// node3 campaigns every election timeout; wait until node2 has turned
	// down two of its attempts in every group, failing as soon as node3
	// wins one.
	node2, node3 := c.Nodes[1], c.Nodes[2]
	before := map[string]uint64{}
	for _, g := range raftkvtest.Groups(1) {
		before[g] = groupOf(node2.Status(), g).RefusedConnections
	}
	raftkvtest.Eventually(t, 30*time.Second, func() error {
		for _, g := range raftkvtest.Groups(1) {
			if st := groupOf(node3.Status(), g); st.State == raft.Leader.String() {
				t.Fatalf("node3, which lacks W, was elected leader of %s (term %d) with the vote of the wiped node2", g, st.Term)
			}
		}
		for _, g := range raftkvtest.Groups(1) {
			if got := groupOf(node2.Status(), g).RefusedConnections - before[g]; got < 2 {
				return fmt.Errorf("the wiped node2 refused %d of node3's connections for %s, want 2", got, g)
			}
		}
		return nil
	})

	c.Restart(0)
	c.WaitReady()
	for _, n := range c.Nodes {
		if r := raftkvtest.Get(n.HTTPAddr, "w"); r.Status != http.StatusOK || string(r.Body) != "acknowledged" {
			t.Fatalf("W read through %s: %d %q", n.ID, r.Status, r.Body)
		}
	}
	for _, g := range c.Nodes[0].Status().Groups {
		if len(g.Voters) != 3 {
			t.Fatalf("%s voters %v, want all three", g.Name, g.Voters)
		}
	}
}

// TestAWipedNodeWithoutJoinRefusesToFoundASecondCluster: a node whose data
// dir was wiped and that is started again on its addresses without --join
// hears from the cluster that still lists it and refuses to start, saying
// what to do; started with --join it is taken back.
func TestAWipedNodeWithoutJoinRefusesToFoundASecondCluster(t *testing.T) {
	wait := 200 * time.Millisecond
	c := raftkvtest.NewStreamCluster(t, 3, 1, func(cfg *cluster.Config) { cfg.BootstrapWait = wait })
	clusterID := c.Nodes[0].Status().ClusterID
	c.Stop(2)
	// Long enough to hear a leader's next heartbeat; the refusal comes
	// as soon as one arrives.
	wait = 30 * time.Second
	err := c.TryRestartWipedAlone(2)
	if err == nil {
		t.Fatal("a wiped node3 started without --join bootstrapped a new cluster on the addresses of a running one")
	}
	for _, want := range []string{"refusing to bootstrap", clusterID, "--join"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("start error %q does not mention %q", err, want)
		}
	}
	if r := raftkvtest.Put(c.Nodes[0].HTTPAddr, "after", "v"); r.Status != http.StatusOK {
		t.Fatalf("write to the cluster after the refused start: %d %s", r.Status, r.Body)
	}
	c.RestartWiped(2)
	c.WaitReady()
	if r := raftkvtest.Do(http.MethodGet, c.Nodes[2].HTTPAddr, raftkvtest.KeyPath("after")+"?consistency=stale", nil, nil); string(r.Body) != "v" {
		t.Fatalf("node3 after rejoining: %d %q", r.Status, r.Body)
	}
}

// TestDataDirsFromBeforeIncarnationsGetOneAndKeepWorking: a cluster whose
// node.json files and registry entries carry no incarnation (written by a
// raftkv from before them) restarts, every node gets an incarnation and
// registers it, keeps it across restarts, and nothing written is lost.
func TestDataDirsFromBeforeIncarnationsGetOneAndKeepWorking(t *testing.T) {
	c := raftkvtest.NewStreamCluster(t, 3, 1, nil)
	for i := 0; i < 10; i++ {
		if r := raftkvtest.Put(c.Nodes[i%3].HTTPAddr, fmt.Sprint("k", i), "v"); r.Status != http.StatusOK {
			t.Fatalf("put: %d %s", r.Status, r.Body)
		}
	}
	for i := range c.Nodes {
		c.Stop(i)
	}
	for _, n := range c.Nodes {
		withoutIncarnations(t, n.DataDir())
	}
	for i := range c.Nodes {
		c.Restart(i)
	}
	c.WaitReady()
	incarnations := map[string]string{}
	raftkvtest.Eventually(t, 20*time.Second, func() error {
		for _, n := range c.Nodes {
			inc, _ := nodeJSON(t, n.DataDir())["incarnation"].(string)
			if inc == "" {
				return fmt.Errorf("%s: no incarnation in node.json", n.ID)
			}
			incarnations[n.ID] = inc
		}
		for _, n := range c.Nodes {
			for _, rec := range n.Status().Nodes {
				if rec.Incarnation != incarnations[rec.ID] {
					return fmt.Errorf("%s's registry has %s at incarnation %q, its node.json %q", n.ID, rec.ID, rec.Incarnation, incarnations[rec.ID])
				}
			}
		}
		return nil
	})
	for i := 0; i < 10; i++ {
		if r := raftkvtest.Get(c.Nodes[(i+1)%3].HTTPAddr, fmt.Sprint("k", i)); r.Status != http.StatusOK || string(r.Body) != "v" {
			t.Fatalf("k%d after the upgrade: %d %q", i, r.Status, r.Body)
		}
	}
	c.Stop(1)
	c.Restart(1)
	c.WaitReady()
	if got, _ := nodeJSON(t, c.Nodes[1].DataDir())["incarnation"].(string); got != incarnations["node2"] {
		t.Fatalf("node2's incarnation changed across a restart: %s → %s", incarnations["node2"], got)
	}
	if r := raftkvtest.Put(c.Nodes[1].HTTPAddr, "later", "v"); r.Status != http.StatusOK {
		t.Fatalf("put after the restart: %d %s", r.Status, r.Body)
	}
}

func nodeJSON(t *testing.T, dir string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "node.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// withoutIncarnations rewrites a stopped node's data dir as a raftkv from
// before incarnations wrote it: no incarnation in node.json, and the meta
// log's registrations in the old upsert-node layout.
func withoutIncarnations(t *testing.T, dir string) {
	t.Helper()
	st := nodeJSON(t, dir)
	delete(st, "incarnation")
	data, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(dir, "node.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if metas, _ := os.ReadDir(filepath.Join(dir, cluster.MetaGroup, "snapshots")); len(metas) > 0 {
		t.Fatalf("meta has a checkpoint; this rewrite covers the log only")
	}
	db, err := logstore.Open(filepath.Join(dir, "raft-wal"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := db.Group(cluster.MetaGroup)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	var entries []*raft.Log
	rewritten := 0
	for i := first; i <= last && first > 0; i++ {
		l := new(raft.Log)
		if err := s.GetLog(i, l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if cmd, err := registry.Decode(l.Data); l.Type == raft.LogCommand && err == nil && cmd.Type == registry.CommandRegisterNode {
			old := cmd.Node
			old.Incarnation = ""
			l.Data = registry.EncodeUpsertNode(old)
			rewritten++
		}
		entries = append(entries, l)
	}
	if rewritten == 0 {
		t.Fatal("no registration with an incarnation in the meta log")
	}
	if err := s.DeleteRange(first, last); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(entries); err != nil {
		t.Fatal(err)
	}
}
