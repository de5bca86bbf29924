package cluster_test

import (
	"fmt"
	"net/http"
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
	if g := snap.Groups[1]; g.Name != "shard-1" || !g.Taken || g.Index < 100 || g.Bytes == 0 {
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
