package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/keyspace"
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

// keyIn returns a key of shard in a cluster of shards shards.
func keyIn(prefix, shard string, shards int) string {
	for i := 0; ; i++ {
		if k := fmt.Sprint(prefix, i); keyspace.ShardFor(k, shards) == shard {
			return k
		}
	}
}

func TestTxnAcrossShardsGoesToThePrimarysLeader(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	eps := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		eps[i] = n.HTTPAddr
	}
	ctx := context.Background()
	a, b := keyIn("a", "shard-1", 2), keyIn("b", "shard-2", 2)
	// Spread over the nodes like curl: any node coordinates.
	plain := client.New(eps, client.WithTimeout(10*time.Second))
	if _, err := plain.Put(ctx, a, []byte("100")); err != nil {
		t.Fatal(err)
	}
	transfer := client.Txn{
		Compare: []client.TxnCompare{client.CompareVersion(a, ">", 0)},
		Success: []client.TxnOp{client.PutOp(a, []byte("90")), client.PutOp(b, []byte{0xff, 10}), client.GetOp(a)},
		Failure: []client.TxnOp{client.GetOp(a)},
	}
	res, err := plain.Txn(ctx, transfer)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Succeeded || res.Mode != "2pc" || len(res.Shards) != 2 || res.Shards[0] != "shard-1" || len(res.Results) != 3 {
		t.Fatalf("txn answer %+v", res)
	}
	if got := res.Results[2]; got.Op != "get" || string(got.Value) != "100" || !got.Found {
		t.Fatalf("get in the txn saw %+v, want the value before it, 100", got)
	}
	v, err := plain.Get(ctx, b)
	if err != nil || string(v.Value) != "\xff\n" {
		t.Fatalf("get %s: %q, %v", b, v.Value, err)
	}

	// With leader routing the primary's leader coordinates it.
	routed := client.New(eps, client.WithLeaderRouting(), client.WithTimeout(10*time.Second))
	lead := c.Nodes[c.Leader("shard-1")].ID
	for range 3 {
		res, err := routed.Txn(ctx, transfer)
		if err != nil {
			t.Fatal(err)
		}
		if res.Node != lead {
			t.Fatalf("txn coordinated by %s, want shard-1's leader %s", res.Node, lead)
		}
	}

	// TxnJSON passes the body through; what the server refuses comes back
	// as its error.
	raw, err := routed.TxnJSON(ctx, []byte(`{"success":[{"op":"get","key":"`+a+`"}]}`))
	if err != nil || !strings.Contains(string(raw), `"succeeded":true`) {
		t.Fatalf("TxnJSON: %s, %v", raw, err)
	}
	_, err = routed.TxnJSON(ctx, []byte(`{"success":[{"op":"frobnicate","key":"x"}]}`))
	if !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("TxnJSON with a bad op: %v, want bad request", err)
	}
	if _, err := routed.Txn(ctx, client.Txn{Compare: []client.TxnCompare{{Key: a, Target: "colour", Op: "=="}}}); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("Txn with an unknown target: %v, want bad request", err)
	}
}
