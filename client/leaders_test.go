package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/raftkv/raftkv/internal/keyspace"
)

// fakeNodes is three nodes of a two-shard cluster that answer key requests
// and say who they are; leader says which node each shard's answers name.
type fakeNodes struct {
	mu     sync.Mutex
	srv    []*httptest.Server
	leader map[string]string // shard -> node id named in answers
	hits   map[string]int    // node id -> key requests it received
}

func newFakeNodes(t *testing.T) *fakeNodes {
	f := &fakeNodes{leader: map[string]string{"shard-1": "n2", "shard-2": "n3"}, hits: map[string]int{}}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprint("n", i)
		f.srv = append(f.srv, httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if r.URL.Path == "/v1/cluster" {
				st := ClusterStatus{Shards: 2, Node: id}
				for j, s := range f.srv {
					st.Nodes = append(st.Nodes, NodeInfo{ID: fmt.Sprint("n", j+1), HTTPAddr: strings.TrimPrefix(s.URL, "http://")})
				}
				for shard, lead := range f.leader {
					st.Groups = append(st.Groups, GroupStatus{Name: shard, Leader: lead})
				}
				_ = json.NewEncoder(w).Encode(st)
				return
			}
			f.hits[id]++
			key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
			shard := keyspace.ShardFor(key, 2)
			w.Header().Set("X-Raftkv-Node", f.leader[shard]) // the node that served it, after any forwarding
			w.Header().Set("X-Raftkv-Shard", shard)
			_ = json.NewEncoder(w).Encode(map[string]any{"key": key, "revision": 1})
		})))
	}
	t.Cleanup(func() {
		for _, s := range f.srv {
			s.Close()
		}
	})
	return f
}

func (f *fakeNodes) takeHits() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hits
	f.hits = map[string]int{}
	return h
}

func keyIn(shard string) string {
	for i := 0; ; i++ {
		if k := fmt.Sprint("k", i); keyspace.ShardFor(k, 2) == shard {
			return k
		}
	}
}

func TestLeaderRoutingSendsEachKeyToItsShardsLeader(t *testing.T) {
	f := newFakeNodes(t)
	c := New([]string{f.srv[0].URL}, WithLeaderRouting())
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := c.Put(ctx, keyIn("shard-1"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, keyIn("shard-2"), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if h := f.takeHits(); h["n2"] != 5 || h["n3"] != 5 || h["n1"] != 0 {
		t.Fatalf("requests per node %v, want 5 on n2 (shard-1's leader) and 5 on n3 (shard-2's)", h)
	}

	// Leadership of shard-1 moves to n1: n2 now forwards and its answer
	// names n1, and the next request goes to n1 directly.
	f.mu.Lock()
	f.leader["shard-1"] = "n1"
	f.mu.Unlock()
	for i := 0; i < 3; i++ {
		if _, err := c.Put(ctx, keyIn("shard-1"), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if h := f.takeHits(); h["n2"] != 1 || h["n1"] != 2 {
		t.Fatalf("after the move: requests per node %v, want one more on n2, then n1", h)
	}

	// The leader it knows is unreachable: the request goes to the
	// endpoints, which forward.
	f.srv[0].Close()
	f.mu.Lock()
	f.leader["shard-1"] = "n3"
	f.mu.Unlock()
	c = New([]string{f.srv[2].URL}, WithLeaderRouting())
	c.router.shards = 2
	c.router.addrs = map[string]string{"n1": f.srv[0].URL, "n3": f.srv[2].URL}
	c.router.leaders["shard-1"] = "n1"
	if _, err := c.Put(ctx, keyIn("shard-1"), []byte("v")); err != nil {
		t.Fatalf("with the known leader down: %v", err)
	}
	if h := f.takeHits(); h["n3"] != 1 {
		t.Fatalf("with the known leader down: requests per node %v, want n3", h)
	}
}

func TestWithoutLeaderRoutingRequestsStayOnTheEndpoints(t *testing.T) {
	f := newFakeNodes(t)
	c := New([]string{f.srv[0].URL})
	for i := 0; i < 4; i++ {
		if _, err := c.Put(context.Background(), keyIn("shard-2"), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if h := f.takeHits(); h["n1"] != 4 {
		t.Fatalf("requests per node %v, want all 4 on the one endpoint", h)
	}
}
