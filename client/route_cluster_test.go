package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/raftkvtest"
)

// A routing client whose map names a former leader that can no longer
// forward: that node answers 503 with a hint, and the client goes to the
// new leader within the same call, then stays there.
func TestRoutingClientFollowsTheLeaderHintOfARealNode(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 1)
	eps := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		eps[i] = n.HTTPAddr
	}
	// The node waits 9/10 of the call's deadline for a leader before it
	// answers 503; the rest is the retry's.
	kv := client.New(eps, client.WithLeaderRouting(), client.WithTimeout(6*time.Second))
	ctx := context.Background()
	res, err := kv.Put(ctx, "k", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	old := c.Leader("shard-1")
	if res.Node != c.Nodes[old].ID {
		t.Fatalf("first put served by %s, the leader is %s", res.Node, c.Nodes[old].ID)
	}
	next := (old + 1) % 3
	if err := kv.TransferLeadership(ctx, "shard-1", c.Nodes[next].ID); err != nil {
		t.Fatal(err)
	}
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		if l := c.Leader("shard-1"); l != next {
			return fmt.Errorf("shard-1 led by %s, want %s", c.Nodes[l].ID, c.Nodes[next].ID)
		}
		return nil
	})
	c.CutCalls(old, next)

	// The client still believes the old leader leads: it sends there, the
	// old leader cannot forward and names the new one.
	res, err = kv.Put(ctx, "k", []byte("v2"))
	if err != nil {
		t.Fatalf("put through the cut-off former leader: %v", err)
	}
	if res.Node != c.Nodes[next].ID {
		t.Fatalf("put served by %s, want the new leader %s", res.Node, c.Nodes[next].ID)
	}
	v, err := kv.Get(ctx, "k")
	if err != nil || string(v.Value) != "v2" || v.Node != c.Nodes[next].ID {
		t.Fatalf("get: %q from %s, %v; want v2 from %s", v.Value, v.Node, err, c.Nodes[next].ID)
	}
}
