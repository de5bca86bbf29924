package cluster_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/raftkvtest"
)

// leave removes node id from the cluster through node via.
func leave(t *testing.T, via *raftkvtest.Node, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := via.Leave(ctx, id); err != nil {
		t.Fatalf("leave %s through %s: %v", id, via.ID, err)
	}
}

// waitRemoved waits until node says it was removed, with the way back,
// and returns its Removal.
func waitRemoved(t *testing.T, node *raftkvtest.Node, evidence string) *cluster.Removal {
	t.Helper()
	var r *cluster.Removal
	raftkvtest.Eventually(t, 30*time.Second, func() error {
		r = node.Status().Removed
		if r == nil || r.Evidence != evidence {
			return fmt.Errorf("%s reports removal %+v, want evidence %q", node.ID, r, evidence)
		}
		return nil
	})
	ok, why := node.Ready()
	if ok || !strings.Contains(why, "removed from the cluster") || !strings.Contains(why, "wipe its data dir") || !strings.Contains(why, "--join") {
		t.Errorf("%s: Ready() = %v, %q; want not ready, removed, and the way back", node.ID, ok, why)
	}
	return r
}

// checkServesNothing asks a removed node for its data every way a client
// can, and expects 410 removed each time; /readyz says so too, and
// GET /v1/cluster still answers, with the removal.
func checkServesNothing(t *testing.T, node *raftkvtest.Node, key string) {
	t.Helper()
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, raftkvtest.KeyPath(key) + "?consistency=stale"},
		{http.MethodGet, raftkvtest.KeyPath(key) + "?consistency=stale&min_index=1"},
		{http.MethodGet, raftkvtest.KeyPath(key)},
		{http.MethodGet, "/v1/kv?prefix=&consistency=stale"},
		{http.MethodGet, "/v1/kv?prefix=&consistency=stale&keys_only=true"},
		{http.MethodGet, "/v1/kv?prefix=&consistency=stale&count_only=true"},
		{http.MethodPut, raftkvtest.KeyPath(key)},
		{http.MethodDelete, raftkvtest.KeyPath(key)},
		{http.MethodPost, "/v1/txn"},
		{http.MethodGet, "/readyz"},
	} {
		resp := raftkvtest.Do(req.method, node.HTTPAddr, req.path, []byte("v2"), nil)
		if resp.Status != http.StatusGone || resp.ErrorCode() != "removed" || !strings.Contains(string(resp.Body), "--join") {
			t.Errorf("%s %s on removed %s: %d %s; want 410 removed with the way back", req.method, req.path, node.ID, resp.Status, resp.Body)
		}
	}
	var st cluster.Status
	resp := raftkvtest.Do(http.MethodGet, node.HTTPAddr, "/v1/cluster", nil, nil)
	resp.JSON(t, &st)
	if resp.Status != http.StatusOK || st.Removed == nil || !strings.Contains(st.Removed.Message, "wipe its data dir") {
		t.Errorf("GET /v1/cluster on removed %s: %d, removed %+v", node.ID, resp.Status, st.Removed)
	}
}

// TestARemovedNodeSaysSoAndServesNoStaleData: node3 leaves while it runs.
// It keeps its data dir and keeps running, but its replicas are no longer
// replicated to: it must say it was removed (readiness, status) and refuse
// every read, stale ones included, instead of serving old data for ever.
// After a restart its log still shows it the change.
func TestARemovedNodeSaysSoAndServesNoStaleData(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	node3 := c.Nodes[2]
	if resp := raftkvtest.Put(c.Nodes[0].HTTPAddr, "k", "v1"); resp.Status != http.StatusOK {
		t.Fatalf("put: %d %s", resp.Status, resp.Body)
	}
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		if resp := raftkvtest.Do(http.MethodGet, node3.HTTPAddr, raftkvtest.KeyPath("k")+"?consistency=stale", nil, nil); resp.Status != http.StatusOK {
			return fmt.Errorf("stale read on node3 before the leave: %d %s", resp.Status, resp.Body)
		}
		return nil
	})

	leave(t, c.Nodes[0], node3.ID)
	r := waitRemoved(t, node3, "configuration")
	if len(r.Groups) != 3 {
		t.Errorf("node3 reports removal from %v, want every group", r.Groups)
	}
	checkServesNothing(t, node3, "k")
	for _, n := range c.Nodes[:2] {
		if st := n.Status(); st.Removed != nil {
			t.Errorf("%s, still a member, reports removal %+v", n.ID, st.Removed)
		}
	}

	c.Stop(2)
	c.Restart(2)
	waitRemoved(t, c.Nodes[2], "configuration")
	checkServesNothing(t, c.Nodes[2], "k")
}

// TestANodeRemovedWhileDownLearnsItFromAPeer: node3 is stopped, removed,
// and started again. Its log never saw the change (its replicas still list
// it), so it asks its peers, and the leader of meta, which does not list
// it, settles it. It then stops its groups' raft, which would otherwise
// keep standing for elections the members refuse; started again, it finds
// out again.
func TestANodeRemovedWhileDownLearnsItFromAPeer(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 1)
	c.Stop(2)
	leave(t, c.Nodes[0], "node3")
	for range 2 {
		c.Restart(2)
		r := waitRemoved(t, c.Nodes[2], "peer")
		if r.Peer == "" || r.Peer == "node3" {
			t.Errorf("removal learnt from peer %q, want node1 or node2", r.Peer)
		}
		checkServesNothing(t, c.Nodes[2], "k")
		raftkvtest.Eventually(t, 10*time.Second, func() error {
			for _, g := range c.Nodes[2].Status().Groups {
				if g.State != "Shutdown" {
					return fmt.Errorf("the removed node3's %s is %s, want its raft stopped", g.Name, g.State)
				}
			}
			return nil
		})
		c.Stop(2)
	}
}

// TestARemovedNodeComesBackTheWayItSays: node3 leaves and says it was
// removed; wiped and started with --join, as its message says, it joins as
// a new node. While it joins it knows no configuration: not yet a member,
// which it must not take for removed. Once ready it serves reads again.
func TestARemovedNodeComesBackTheWayItSays(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 1)
	if resp := raftkvtest.Put(c.Nodes[0].HTTPAddr, "k", "v1"); resp.Status != http.StatusOK {
		t.Fatalf("put: %d %s", resp.Status, resp.Body)
	}
	leave(t, c.Nodes[0], "node3")
	waitRemoved(t, c.Nodes[2], "configuration")

	c.Stop(2)
	c.RestartWiped(2)
	node3 := c.Nodes[2]
	raftkvtest.Eventually(t, 30*time.Second, func() error {
		if r := node3.Status().Removed; r != nil {
			t.Fatalf("node3, joining again, reports removal %+v", r)
		}
		if ok, why := node3.Ready(); !ok {
			return fmt.Errorf("node3 not ready: %s", why)
		}
		return nil
	})
	resp := raftkvtest.Do(http.MethodGet, node3.HTTPAddr, raftkvtest.KeyPath("k")+"?consistency=stale", nil, nil)
	if resp.Status != http.StatusOK || string(resp.Body) != "v1" {
		t.Errorf("stale read on node3 after it joined again: %d %s", resp.Status, resp.Body)
	}
}
