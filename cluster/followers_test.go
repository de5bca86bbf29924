package cluster_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/raftkvtest"
)

// followerOf returns what the leader's status says of follower id in group.
func followerOf(st cluster.Status, group, id string) (cluster.FollowerProgress, error) {
	for _, g := range st.Groups {
		if g.Name != group {
			continue
		}
		if g.State != "Leader" {
			return cluster.FollowerProgress{}, fmt.Errorf("%s does not lead %s (%s)", st.Node, group, g.State)
		}
		for _, f := range g.Followers {
			if f.ID == id {
				return f, nil
			}
		}
		return cluster.FollowerProgress{}, fmt.Errorf("%s lists no follower %s of %s: %+v", st.Node, id, group, g.Followers)
	}
	return cluster.FollowerProgress{}, fmt.Errorf("%s has no group %s", st.Node, group)
}

// TestAStoppedFollowerShowsUnreachableWithGrowingLag: node1 leads every
// group; node3 stops and writes go on. As node1 sees it, node3 is
// unreachable, the time since it last heard from node3 grows, and so does
// node3's lag in entries, while node2 stays reachable and caught up. (The
// lag used to be commit minus applied on the answering node: 0 for a dead
// node.)
func TestAStoppedFollowerShowsUnreachableWithGrowingLag(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 1)
	groups := raftkvtest.Groups(1)
	for _, g := range groups {
		c.MakeLeader(g, 0)
	}
	leader := c.Nodes[0]
	raftkvtest.Eventually(t, 20*time.Second, func() error {
		st := leader.Status()
		for _, g := range groups {
			for _, id := range []string{"node2", "node3"} {
				f, err := followerOf(st, g, id)
				if err != nil {
					return err
				}
				if !f.Reachable || f.LastContactMs != 0 || f.LagEntries != 0 {
					return fmt.Errorf("%s of %s before the stop: %+v, want reachable, caught up", id, g, f)
				}
			}
		}
		return nil
	})

	c.Stop(2)
	for i := range 5 {
		if resp := raftkvtest.Put(leader.HTTPAddr, fmt.Sprintf("k%d", i), "v"); resp.Status != http.StatusOK {
			t.Fatalf("put: %d %s", resp.Status, resp.Body)
		}
	}
	shard := cluster.ShardFor("k0", 1)
	var first cluster.FollowerProgress
	raftkvtest.Eventually(t, 20*time.Second, func() error {
		f, err := followerOf(leader.Status(), shard, "node3")
		if err != nil {
			return err
		}
		if f.Reachable || f.LastContactMs <= 0 || f.LagEntries < 5 {
			return fmt.Errorf("stopped node3 of %s: %+v, want unreachable, lagging 5 writes or more", shard, f)
		}
		first = f
		return nil
	})
	// The time since the last contact grows, and so does the lag with
	// every write.
	if resp := raftkvtest.Put(leader.HTTPAddr, "k0", "again"); resp.Status != http.StatusOK {
		t.Fatalf("put: %d %s", resp.Status, resp.Body)
	}
	raftkvtest.Eventually(t, 20*time.Second, func() error {
		f, err := followerOf(leader.Status(), shard, "node3")
		if err != nil {
			return err
		}
		if f.Reachable || f.LastContactMs <= first.LastContactMs || f.LagEntries <= first.LagEntries {
			return fmt.Errorf("stopped node3 of %s: %+v, want more than %+v", shard, f, first)
		}
		return nil
	})
	raftkvtest.Eventually(t, 20*time.Second, func() error {
		st := leader.Status()
		for _, g := range groups {
			f, err := followerOf(st, g, "node2")
			if err != nil {
				return err
			}
			if !f.Reachable || f.LastContactMs != 0 || f.LagEntries != 0 {
				return fmt.Errorf("running node2 of %s: %+v, want reachable, caught up", g, f)
			}
			if f3, err := followerOf(st, g, "node3"); err != nil || f3.Reachable {
				return fmt.Errorf("stopped node3 of %s: %+v (%v), want unreachable", g, f3, err)
			}
		}
		return nil
	})
}
