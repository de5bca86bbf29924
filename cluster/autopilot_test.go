package cluster_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/raftkvtest"
)

// metaLeaderStatus is the status of the node leading the meta group,
// the one that knows every member's health.
func metaLeaderStatus(t *testing.T, c *raftkvtest.Cluster) (int, cluster.Status) {
	t.Helper()
	i := c.Leader(cluster.MetaGroup)
	return i, c.Nodes[i].Status()
}

func TestTheMetaLeaderReportsEveryMembersStageAndHealth(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	raftkvtest.Eventually(t, 20*time.Second, func() error {
		_, st := metaLeaderStatus(t, c)
		if len(st.Nodes) != 3 {
			return fmt.Errorf("%d nodes", len(st.Nodes))
		}
		for _, n := range st.Nodes {
			if n.Stage != "voter" || n.Health == nil || n.Health.Status != "alive" || !n.Health.Healthy {
				return fmt.Errorf("%s: stage %q, health %+v", n.ID, n.Stage, n.Health)
			}
		}
		return nil
	})
	// Only the meta leader watches health; the others still give stages.
	leader, _ := metaLeaderStatus(t, c)
	other := c.Nodes[(leader+1)%3].Status()
	for _, n := range other.Nodes {
		if n.Stage != "voter" || n.Health != nil {
			t.Errorf("%s seen by a follower of meta: stage %q, health %+v", n.ID, n.Stage, n.Health)
		}
	}
}

func TestADeadNodeIsRemovedFromEveryGroupAfterTheTimeout(t *testing.T) {
	c := raftkvtest.NewClusterWith(t, 3, 2, func(cfg *cluster.Config) { cfg.DeadNodeTimeout = 3 * time.Second })
	leader := c.Leader(cluster.MetaGroup)
	dead := (leader + 1) % 3
	deadID := c.Nodes[dead].ID
	c.Disconnect(dead)
	c.Stop(dead)
	killed := time.Now()

	raftkvtest.Eventually(t, 60*time.Second, func() error {
		for i, n := range c.Nodes {
			if i == dead {
				continue
			}
			st := n.Status()
			for _, m := range st.Nodes {
				if m.ID == deadID {
					return fmt.Errorf("%s still lists %s (stage %q, health %+v)", n.ID, deadID, m.Stage, m.Health)
				}
			}
			for _, g := range st.Groups {
				if slices.Contains(g.Voters, deadID) || slices.Contains(g.Nonvoters, deadID) {
					return fmt.Errorf("%s: %s still has %s in its configuration", n.ID, g.Name, deadID)
				}
			}
		}
		return nil
	})
	if took := time.Since(killed); took < 3*time.Second {
		t.Errorf("%s was removed %v after it died, before the 3 s timeout", deadID, took)
	}
	var removed uint64
	for i, n := range c.Nodes {
		if i != dead {
			removed += n.Status().DeadNodesRemoved
		}
	}
	if removed != 1 {
		t.Errorf("the survivors count %d dead-node removals, want 1", removed)
	}
	// The two survivors are the whole cluster now, and it takes writes.
	live := c.Nodes[leader]
	r := raftkvtest.Do(http.MethodPut, live.HTTPAddr, raftkvtest.KeyPath("after-removal"), []byte("v"), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("write after the removal: %d %s", r.Status, r.Body)
	}
}
