package systemtest

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLeave removes a running node with POST /v1/cluster/leave and checks
// that the other two keep serving; leaving an unknown id is a 404.
func TestLeave(t *testing.T) {
	skipShort(t)
	c := StartCluster(t, 3, 4)
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	// Make node3 lead a shard, so leave has to move leadership off it, and
	// keep writing through the other two while it leaves.
	r := mustDo(t, n1, http.MethodPost, "/v1/cluster/transfer-leadership", []byte(`{"group":"shard-1","to":"node3"}`))
	if r.Status != http.StatusOK {
		t.Fatalf("transfer shard-1 to node3: %s", r)
	}
	mustOK(t, WaitFor(10*time.Second, func() error {
		if l, err := c.LeaderOf(t.Context(), "shard-1"); err != nil || l != n3 {
			return fmt.Errorf("shard-1 not led by node3 yet (%v)", err)
		}
		return nil
	}))
	load := startLoad(t, "leave/load", 3, []*Node{n1, n2})
	load.waitAcked(t, 20, 10*time.Second)

	r = mustDo(t, n1, http.MethodPost, "/v1/cluster/leave", []byte(`{"id":"node3"}`))
	if r.Status != http.StatusOK {
		t.Fatalf("leave node3: %s", r)
	}
	load.waitAcked(t, 20, 10*time.Second)
	acked := load.Stop()
	// Leave hands node3's leadership over first: no write may fail.
	load.checkOutcomes(t, "200")
	verifyAll(t, []*Node{n1, n2}, acked, "")
	st, err := n1.Status(t.Context())
	mustOK(t, err)
	for _, g := range st.Groups {
		if slices.Contains(g.Voters, "node3") || slices.Contains(g.Nonvoters, "node3") {
			t.Errorf("after leave, node1 sees node3 in %s: voters %v nonvoters %v", g.Name, g.Voters, g.Nonvoters)
		}
	}
	waitGone(t, n1, "node3")
	waitGone(t, n2, "node3")

	// node3 is no longer a member; take it away to prove two nodes suffice.
	mustOK(t, n3.Kill())
	checkServes(t, []*Node{n1, n2}, "leave", 20)

	r = mustDo(t, n2, http.MethodPost, "/v1/cluster/leave", []byte(`{"id":"no-such-node"}`))
	checkError(t, "leave unknown id", r, http.StatusNotFound, "not_found")
}

// TestLeaveWhileDown kills a node and then asks the cluster to remove it.
func TestLeaveWhileDown(t *testing.T) {
	skipShort(t)
	c := StartCluster(t, 3, 4)
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	mustOK(t, n3.Kill())

	// Groups node3 led must elect a new leader first, which the request may
	// or may not wait for inside its own deadline; retry on 503/504.
	var last *Response
	err := WaitFor(20*time.Second, func() error {
		r, err := Do(n1, http.MethodPost, "/v1/cluster/leave", []byte(`{"id":"node3"}`))
		if err != nil {
			return err
		}
		last = r
		if r.Status == http.StatusServiceUnavailable || r.Status == http.StatusGatewayTimeout {
			return fmt.Errorf("leave node3: %s", r)
		}
		return nil
	})
	mustOK(t, err)
	if last.Status != http.StatusOK {
		t.Fatalf("leave node3 while down: %s", last)
	}
	waitGone(t, n1, "node3")
	waitGone(t, n2, "node3")
	checkServes(t, []*Node{n1, n2}, "leave-down", 20)
}

// waitGone waits until n's view of the cluster has id in no group and not
// in the node registry.
func waitGone(t *testing.T, n *Node, id string) {
	t.Helper()
	err := WaitFor(10*time.Second, func() error {
		st, err := n.Status(t.Context())
		if err != nil {
			return err
		}
		for _, g := range st.Groups {
			if slices.Contains(g.Voters, id) || slices.Contains(g.Nonvoters, id) {
				return fmt.Errorf("%s still in %s (voters %v, nonvoters %v)", id, g.Name, g.Voters, g.Nonvoters)
			}
		}
		if _, ok := st.NodeByID(id); ok {
			return fmt.Errorf("%s still in the node registry %v", id, st.Nodes)
		}
		return nil
	})
	if err != nil {
		t.Errorf("%s's view: %v", n.ID, err)
	}
}

// checkServes writes count keys through the given nodes in turn, and reads
// each back through the next node. Writes must succeed on the first try.
func checkServes(t *testing.T, nodes []*Node, prefix string, count int) {
	t.Helper()
	for i := range count {
		key := fmt.Sprintf("%s/k-%02d", prefix, i)
		val := fmt.Sprintf("v%d", i)
		mustPut(t, nodes[i%len(nodes)], key, val)
		mustOK(t, checkValue(nodes[(i+1)%len(nodes)], key, val, ""))
	}
}

// TestFullRestart stops every node with SIGTERM, starts them all again
// without --join, and checks that every acknowledged write survived.
func TestFullRestart(t *testing.T) {
	skipShort(t)
	c := StartCluster(t, 3, 4)
	acked := map[string]string{}
	for i := range 60 {
		key := fmt.Sprintf("restart/k-%02d", i)
		val := fmt.Sprintf("value %d", i)
		mustPut(t, c.Nodes[i%3], key, val)
		acked[key] = val
	}

	for _, n := range c.Nodes {
		start := time.Now()
		mustOK(t, n.Stop())
		t.Logf("%s exited 0 %v after SIGTERM", n.ID, time.Since(start).Round(time.Millisecond))
	}

	restartAll(t, c)
	mustOK(t, c.WaitConverged(t.Context(), ReadyTimeout, c.Nodes...))
	for i, k := range sortedKeys(acked) {
		mustOK(t, checkValue(c.Nodes[i%3], k, acked[k], ""))
	}
	// The restarted cluster takes writes too.
	for i := range 30 {
		key := fmt.Sprintf("restart/after-%02d", i)
		val := fmt.Sprintf("after %d", i)
		mustPut(t, c.Nodes[i%3], key, val)
		acked[key] = val
	}

	// Now kill -9 every node at once: acknowledged writes were fsynced on a
	// majority, so they must all come back.
	for _, n := range c.Nodes {
		mustOK(t, n.Kill())
	}
	restartAll(t, c)
	mustOK(t, c.WaitConverged(t.Context(), ReadyTimeout, c.Nodes...))
	verifyAll(t, c.Nodes, acked, "")
	checkServes(t, c.Nodes, "restart/final", 6)
}

// restartAll starts every node of c at once (none can be ready alone) with
// no --join flag.
func restartAll(t *testing.T, c *Cluster) {
	t.Helper()
	errs := make(chan error, len(c.Nodes))
	for _, n := range c.Nodes {
		n.Join = nil
		go func() { errs <- n.Restart() }()
	}
	for range c.Nodes {
		mustOK(t, <-errs)
	}
}

// TestRejoinWithWipedDataDir replaces a node by a fresh process with the
// same id, an empty data dir and new ports; its join updates the registered
// addresses and it catches up with the data.
func TestRejoinWithWipedDataDir(t *testing.T) {
	skipShort(t)
	c := StartCluster(t, 3, 4)
	n1, n3 := c.Nodes[0], c.Nodes[2]
	acked := map[string]string{}
	for i := range 20 {
		key := fmt.Sprintf("rejoin/k-%02d", i)
		val := fmt.Sprintf("value %d", i)
		mustPut(t, c.Nodes[i%3], key, val)
		acked[key] = val
	}

	mustOK(t, n3.Kill())
	oldHTTP, oldRaft := n3.HTTPAddr, n3.RaftAddr
	n3.Join = []string{n1.HTTPAddr}
	mustOK(t, n3.PickPorts())
	mustOK(t, n3.StartFresh()) // wipes the data dir
	t.Logf("node3 moved from http %s raft %s to http %s raft %s", oldHTTP, oldRaft, n3.HTTPAddr, n3.RaftAddr)
	mustOK(t, c.WaitConverged(t.Context(), ReadyTimeout, c.Nodes...))

	for _, n := range c.Nodes {
		st, err := n.Status(t.Context())
		mustOK(t, err)
		info, ok := st.NodeByID("node3")
		if !ok || info.HTTPAddr != n3.HTTPAddr || info.RaftAddr != n3.RaftAddr {
			t.Errorf("%s's registry entry for node3: %+v, want http %s raft %s", n.ID, info, n3.HTTPAddr, n3.RaftAddr)
		}
	}
	// The fresh node3 gets the old data; poll its local state.
	for _, k := range sortedKeys(acked) {
		err := WaitFor(15*time.Second, func() error { return checkValue(n3, k, acked[k], "stale") })
		mustOK(t, err)
	}
	mustPut(t, n3, "rejoin/via-node3", "new")
	mustOK(t, checkValue(n1, "rejoin/via-node3", "new", ""))
}

// TestAWipedNodeStartedWithoutJoinRefusesToStart: a member's data dir is
// wiped and the process is started again on its addresses without --join.
// The cluster's leaders still dial it as that member, so it exits naming
// the cluster and telling the operator to use --join, instead of founding
// a second cluster on those addresses. With --join it is taken back.
func TestAWipedNodeStartedWithoutJoinRefusesToStart(t *testing.T) {
	skipShort(t)
	c := StartCluster(t, 3, 1)
	n1, n3 := c.Nodes[0], c.Nodes[2]
	mustPut(t, n1, "wiped/before", "v")
	st, err := n1.Status(t.Context())
	mustOK(t, err)

	mustOK(t, n3.Kill())
	join, args := n3.Join, n3.Args
	n3.Join = nil
	// The refusal comes as soon as a leader dials; the wait only bounds it.
	n3.Args = append(append([]string(nil), args...), "--bootstrap-wait", "30s")
	err = n3.StartFresh()
	if err == nil {
		t.Fatal("a wiped node3 started without --join came up on the addresses of a running cluster")
	}
	for _, want := range []string{"refusing to bootstrap", st.ClusterID, "--join"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("start failure does not mention %q:\n%v", want, err)
		}
	}
	mustPut(t, n1, "wiped/after", "v")

	n3.Join, n3.Args = join, args
	mustOK(t, n3.StartFresh())
	mustOK(t, c.WaitConverged(t.Context(), ReadyTimeout, c.Nodes...))
	for _, k := range []string{"wiped/before", "wiped/after"} {
		mustOK(t, WaitFor(15*time.Second, func() error { return checkValue(n3, k, "v", "stale") }))
	}
}
