package cluster_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/raftkvtest"
)

func smallLogs(c *cluster.Config) {
	c.SnapshotThreshold = 1 << 30 // only the explicit checkpoints below
	c.SnapshotInterval = time.Hour
	c.TrailingLogs = 5
}

func groupOf(st cluster.Status, name string) cluster.GroupStatus {
	for _, g := range st.Groups {
		if g.Name == name {
			return g
		}
	}
	return cluster.GroupStatus{}
}

func TestFollowerBehindACompactedLogIsCaughtUpByCheckpointInstall(t *testing.T) {
	c := raftkvtest.NewClusterWith(t, 3, 1, smallLogs)
	c.Stop(2)
	addr := c.Nodes[0].HTTPAddr
	for i := 0; i < 100; i++ {
		if r := raftkvtest.Put(addr, fmt.Sprintf("k%03d", i), fmt.Sprint(i)); r.Status != http.StatusOK {
			t.Fatalf("put: %d %s", r.Status, r.Body)
		}
	}
	leader := c.Leader("shard-1")
	r := raftkvtest.Do(http.MethodPost, c.Nodes[leader].HTTPAddr, "/v1/cluster/snapshot", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("snapshot: %d %s", r.Status, r.Body)
	}
	var snap struct {
		Groups []cluster.CheckpointInfo
	}
	r.JSON(t, &snap)
	// Taken now, or already by raft's own schedule (small thresholds here).
	if g := snap.Groups[1]; g.Name != "shard-1" || g.Index < 100 || g.Bytes == 0 {
		t.Fatalf("shard-1 checkpoint: %+v", g)
	}
	c.Restart(2)
	c.WaitReady()
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		st := groupOf(c.Nodes[2].Status(), "shard-1")
		if st.LastSnapshotIndex == 0 {
			return fmt.Errorf("node3 has not installed a checkpoint yet")
		}
		return nil
	})
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("k%03d", i)
		got := raftkvtest.Do(http.MethodGet, c.Nodes[2].HTTPAddr, raftkvtest.KeyPath(k)+"?consistency=stale", nil, nil)
		if got.Status != http.StatusOK || string(got.Body) != fmt.Sprint(i) {
			t.Fatalf("%s on node3 after install: %d %q", k, got.Status, got.Body)
		}
	}
}

func TestRestartLoadsTheCheckpointAndReplaysTheLogAfterIt(t *testing.T) {
	c := raftkvtest.NewClusterWith(t, 1, 1, smallLogs)
	addr := c.Nodes[0].HTTPAddr
	for i := 0; i < 30; i++ {
		raftkvtest.Put(addr, fmt.Sprintf("before-%d", i), "x")
	}
	if r := raftkvtest.Do(http.MethodPost, addr, "/v1/cluster/snapshot", nil, nil); r.Status != http.StatusOK {
		t.Fatalf("snapshot: %d %s", r.Status, r.Body)
	}
	for i := 0; i < 20; i++ {
		raftkvtest.Put(addr, fmt.Sprintf("after-%d", i), "y")
	}
	c.Stop(0)
	c.Restart(0)
	c.WaitReady()
	var st cluster.GroupStatus
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		st = groupOf(c.Nodes[0].Status(), "shard-1")
		if st.RecoveryMs < 0 {
			return fmt.Errorf("replay not finished")
		}
		return nil
	})
	if st.RestoredFromSnapshotIndex < 30 || st.RestoredKeys != 30 {
		t.Fatalf("restored from %d with %d keys, want the checkpoint of 30 keys", st.RestoredFromSnapshotIndex, st.RestoredKeys)
	}
	if st.ReplayedEntries < 20 {
		t.Fatalf("replayed %d entries, want at least the 20 writes after the checkpoint", st.ReplayedEntries)
	}
	for i := 0; i < 20; i++ {
		if got := raftkvtest.Get(c.Nodes[0].HTTPAddr, fmt.Sprintf("after-%d", i)); string(got.Body) != "y" {
			t.Fatalf("after-%d: %d %q", i, got.Status, got.Body)
		}
	}
}

// snapshotFiles returns the state files of a group's checkpoints, newest
// first.
func snapshotFiles(t *testing.T, dataDir, group string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(dataDir, group, "snapshots", "*", "state.bin"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no checkpoints of %s in %s: %v", group, dataDir, err)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs))) // names start with term-index-time
	return dirs
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func checkpointNow(t *testing.T, addr string) {
	t.Helper()
	if r := raftkvtest.Do(http.MethodPost, addr, "/v1/cluster/snapshot", nil, nil); r.Status != http.StatusOK {
		t.Fatalf("snapshot: %d %s", r.Status, r.Body)
	}
}

func TestCorruptNewestCheckpointFallsBackToTheOlderOneAndReplaysMoreLog(t *testing.T) {
	c := raftkvtest.NewClusterWith(t, 1, 1, func(cfg *cluster.Config) {
		cfg.SnapshotThreshold, cfg.SnapshotInterval = 1<<30, time.Hour
	})
	addr := c.Nodes[0].HTTPAddr
	for i := 0; i < 10; i++ {
		raftkvtest.Put(addr, fmt.Sprintf("a%d", i), "1")
	}
	checkpointNow(t, addr)
	older := groupOf(c.Nodes[0].Status(), "shard-1").LastSnapshotIndex
	for i := 0; i < 10; i++ {
		raftkvtest.Put(addr, fmt.Sprintf("b%d", i), "2")
	}
	checkpointNow(t, addr)
	dataDir := c.Nodes[0].DataDir()
	c.Stop(0)
	flipByte(t, snapshotFiles(t, dataDir, "shard-1")[0])
	c.Restart(0)
	c.WaitReady()
	st := groupOf(c.Nodes[0].Status(), "shard-1")
	if st.RestoredFromSnapshotIndex != older {
		t.Fatalf("restored from %d, want the older checkpoint %d", st.RestoredFromSnapshotIndex, older)
	}
	for i := 0; i < 10; i++ {
		if got := raftkvtest.Get(c.Nodes[0].HTTPAddr, fmt.Sprintf("b%d", i)); string(got.Body) != "2" {
			t.Fatalf("b%d after fallback: %d %q", i, got.Status, got.Body)
		}
	}
}

func TestNoValidCheckpointAndACompactedLogRefusesToStart(t *testing.T) {
	c := raftkvtest.NewClusterWith(t, 1, 1, smallLogs)
	addr := c.Nodes[0].HTTPAddr
	for round := 0; round < 2; round++ {
		for i := 0; i < 20; i++ {
			raftkvtest.Put(addr, fmt.Sprintf("r%d-%d", round, i), "x")
		}
		checkpointNow(t, addr)
	}
	dataDir := c.Nodes[0].DataDir()
	c.Stop(0)
	for _, f := range snapshotFiles(t, dataDir, "shard-1") {
		flipByte(t, f)
	}
	err := c.TryRestart(0)
	if err == nil {
		t.Fatalf("a node whose checkpoints are all corrupt and whose log is compacted started anyway")
	}
	if !strings.Contains(err.Error(), "shard-1") {
		t.Fatalf("the error does not name the group: %v", err)
	}
}

func TestACheckpointWithNothingNewSaysSoAndWritesNothing(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 2)
	n := c.Nodes[0]
	if r := raftkvtest.Put(n.HTTPAddr, "k", "v"); r.Status != http.StatusOK {
		t.Fatalf("put: %d %s", r.Status, r.Body)
	}
	first, err := n.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	second, err := n.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range second {
		if g.Name == "meta" {
			continue // the node's own registration may still be landing there
		}
		if g.Taken || g.Index != first[i].Index || g.Bytes != first[i].Bytes {
			t.Errorf("%s: checkpointed again with nothing applied since: %+v after %+v", g.Name, g, first[i])
		}
	}
	if got := groupOf(n.Status(), "shard-1").Checkpoints + groupOf(n.Status(), "shard-2").Checkpoints; got != 2 {
		t.Errorf("the shards wrote %d checkpoints for two calls with nothing new in between, want 2", got)
	}
}
