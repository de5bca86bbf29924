package cluster_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftkvtest"
)

func TestOverviewGathersEveryNodeAndShowsAStoppedOneDown(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	viewer := c.Nodes[0]
	for i := range 10 {
		if r := raftkvtest.Do(http.MethodPut, viewer.HTTPAddr, raftkvtest.KeyPath(fmt.Sprintf("k%d", i)), []byte("v"), nil); r.Status != http.StatusOK {
			t.Fatalf("write %d: %d %s", i, r.Status, r.Body)
		}
	}

	ov := viewer.Overview(context.Background())
	if ov.Node != viewer.ID || len(ov.Nodes) != 3 {
		t.Fatalf("overview by %s of %d nodes, want %s and 3", ov.Node, len(ov.Nodes), viewer.ID)
	}
	var applies uint64
	for _, n := range ov.Nodes {
		if !n.Reachable || n.Status == nil || n.Status.Node != n.ID || len(n.Status.Groups) != 3 {
			t.Fatalf("%s: reachable %v, error %q, status %+v", n.ID, n.Reachable, n.Error, n.Status)
		}
		for _, g := range n.Status.Groups {
			applies += g.Applies
			if g.Applies > 0 && g.ApplySeconds <= 0 {
				t.Errorf("%s %s: %d applies took no time", n.ID, g.Name, g.Applies)
			}
		}
	}
	// Every acknowledged write was proposed by some shard leader, plus the
	// cluster's own entries (registration, meta).
	if applies < 10 {
		t.Errorf("the nodes count %d applied proposals after 10 writes", applies)
	}

	stopped := 2
	c.Stop(stopped)
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		for _, n := range viewer.Overview(context.Background()).Nodes {
			switch {
			case n.ID == c.Nodes[stopped].ID && (n.Reachable || n.Error == "" || n.Status != nil):
				return fmt.Errorf("stopped %s: reachable %v, error %q", n.ID, n.Reachable, n.Error)
			case n.ID != c.Nodes[stopped].ID && !n.Reachable:
				return fmt.Errorf("running %s unreachable: %s", n.ID, n.Error)
			}
		}
		return nil
	})
}
