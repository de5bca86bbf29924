package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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

// hintNode is one node of a one-shard cluster whose key answers the test
// scripts: status 200 serves the request (naming this node as the shard's
// leader), anything else is an error answer carrying the leader hint in
// hint (node id and HTTP address; "" leaves a header out).
type hintNode struct {
	mu       sync.Mutex
	id       string
	status   int
	hint     [2]string
	srv      *httptest.Server
	requests []string // "METHOD path" of the key requests received
}

func newHintNode(t *testing.T, id string) *hintNode {
	n := &hintNode{id: id, status: http.StatusOK}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		w.Header().Set("X-Raftkv-Node", n.id)
		if r.URL.Path == "/v1/cluster" {
			// Only the routing tests that set the map by hand get here
			// by accident; an empty map keeps them on what they set.
			_ = json.NewEncoder(w).Encode(ClusterStatus{Node: n.id})
			return
		}
		n.requests = append(n.requests, r.Method+" "+r.URL.Path)
		w.Header().Set("X-Raftkv-Shard", "shard-1")
		if n.status == http.StatusOK {
			_ = json.NewEncoder(w).Encode(map[string]any{"key": "k", "revision": 1})
			return
		}
		if n.hint[0] != "" {
			w.Header().Set("X-Raftkv-Leader", n.hint[0])
		}
		if n.hint[1] != "" {
			w.Header().Set("X-Raftkv-Leader-Addr", n.hint[1])
		}
		code := map[int]string{503: CodeUnavailable, 504: CodeTimeout}[n.status]
		w.WriteHeader(n.status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"scripted"}}`, code)
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *hintNode) addr() string { return strings.TrimPrefix(n.srv.URL, "http://") }

func (n *hintNode) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.requests
	n.requests = nil
	return r
}

func (n *hintNode) script(status int, hintID, hintAddr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.status, n.hint = status, [2]string{hintID, hintAddr}
}

// routedTo makes a routing client that believes node `lead` leads shard-1
// of a one-shard cluster, as if learnt before leadership moved.
func routedTo(endpoints []string, lead *hintNode, known ...*hintNode) *Client {
	c := New(endpoints, WithLeaderRouting())
	c.router.shards = 1
	c.router.addrs = map[string]string{lead.id: lead.srv.URL}
	for _, n := range known {
		c.router.addrs[n.id] = n.srv.URL
	}
	c.router.leaders["shard-1"] = lead.id
	return c
}

func TestLeaderHintOf503SendsAnyRequestOnceMoreToTheHintedLeader(t *testing.T) {
	ctx := context.Background()
	stale, leader := newHintNode(t, "n1"), newHintNode(t, "n2")
	// n1 cannot reach the leader and says n2 leads, with n2's address: a
	// write (not idempotent) goes to n2 since 503 says nothing happened.
	stale.script(503, "n2", leader.addr())
	c := routedTo([]string{stale.srv.URL}, stale)
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("put after a 503 with a hint: %v", err)
	}
	if s, l := stale.take(), leader.take(); len(s) != 1 || len(l) != 1 {
		t.Fatalf("requests: n1 %v, n2 %v; want one each", s, l)
	}
	// The map was updated by the hint: the next requests go straight to n2.
	for range 3 {
		if _, err := c.Get(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if s, l := stale.take(), leader.take(); len(s) != 0 || len(l) != 3 {
		t.Fatalf("after the hint: n1 %v, n2 %v; want all on n2", s, l)
	}
}

func TestLeaderHintOf504IsRecordedButAWriteIsNotResent(t *testing.T) {
	ctx := context.Background()
	stale, leader := newHintNode(t, "n1"), newHintNode(t, "n2")
	stale.script(504, "n2", leader.addr())
	c := routedTo([]string{stale.srv.URL}, stale)
	_, err := c.Put(ctx, "k", []byte("v"))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("put answered 504: err %v, want the 504, indeterminate", err)
	}
	if l := leader.take(); len(l) != 0 {
		t.Fatalf("a write answered 504 was resent to the hinted leader: %v", l)
	}
	stale.take()
	// A read after a 504 may go again, and the hint was recorded anyway.
	c = routedTo([]string{stale.srv.URL}, stale)
	if _, err := c.Get(ctx, "k"); err != nil {
		t.Fatalf("get after a 504 with a hint: %v", err)
	}
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if s, l := stale.take(), leader.take(); len(s) != 1 || len(l) != 2 {
		t.Fatalf("requests: n1 %v, n2 %v; want the get's first try on n1, then n2", s, l)
	}
}

func TestLeaderHintRetriesOnlyOnce(t *testing.T) {
	// Two nodes that each name the other: the client must not bounce.
	a, b := newHintNode(t, "n1"), newHintNode(t, "n2")
	a.script(503, "n2", b.addr())
	b.script(503, "n1", a.addr())
	c := routedTo([]string{a.srv.URL}, a)
	_, err := c.Get(context.Background(), "k")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 503 {
		t.Fatalf("err %v, want the 503", err)
	}
	if ra, rb := a.take(), b.take(); len(ra) != 1 || len(rb) != 1 {
		t.Fatalf("requests: n1 %v, n2 %v; want one each", ra, rb)
	}
}

func TestLeaderHintWithoutAnAddressWaitsForTheMap(t *testing.T) {
	stale, leader := newHintNode(t, "n1"), newHintNode(t, "n2")
	stale.script(503, "n9", "") // a node the client has no address for
	c := routedTo([]string{stale.srv.URL}, stale, leader)
	if _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want the 503", err)
	}
	c.router.mu.Lock()
	defer c.router.mu.Unlock()
	if c.router.leaders["shard-1"] != "n9" || !c.router.stale {
		t.Fatalf("router leaders %v, stale %v; want n9 recorded and a refresh due", c.router.leaders, c.router.stale)
	}
}

// countingDials is an HTTP client that counts the dials to each address.
func countingDials() (*http.Client, func(addr string) int) {
	var mu sync.Mutex
	dials := map[string]int{}
	d := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials[addr]++
		mu.Unlock()
		return d.DialContext(ctx, network, addr)
	}}
	return &http.Client{Transport: tr}, func(addr string) int {
		mu.Lock()
		defer mu.Unlock()
		return dials[addr]
	}
}

func TestUnreachableLeaderAddressIsSkippedForAWhile(t *testing.T) {
	// As behind a load balancer: the leader's own address cannot be
	// dialled, the endpoint forwards.
	gone, lb := newHintNode(t, "n1"), newHintNode(t, "n2")
	gone.srv.Close()
	lb.script(http.StatusOK, "", "")
	hc, dials := countingDials()
	c := New([]string{lb.srv.URL}, WithLeaderRouting(), WithHTTPClient(hc))
	c.router.shards = 1
	c.router.addrs = map[string]string{"n1": gone.srv.URL}
	c.router.leaders["shard-1"] = "n1"
	for range 3 {
		if _, err := c.Put(context.Background(), "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		// The fake names n2 as the server; point the map back at the
		// dead address, as a node's answer naming n1 would.
		c.router.mu.Lock()
		c.router.leaders["shard-1"] = "n1"
		c.router.mu.Unlock()
	}
	if n := dials(gone.addr()); n != 1 {
		t.Fatalf("dialled the unreachable leader %d times, want once", n)
	}
	if l := lb.take(); len(l) != 3 {
		t.Fatalf("endpoint got %v, want all three puts", l)
	}
	// Once downFor has passed it is tried again.
	c.router.mu.Lock()
	c.router.down[gone.srv.URL] = time.Now().Add(-downFor)
	c.router.mu.Unlock()
	if _, err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if n := dials(gone.addr()); n != 2 {
		t.Fatalf("dialled the leader %d times after downFor, want 2", n)
	}
}

func TestHintedLeaderThatCannotBeReachedLeavesTheFirstAnswer(t *testing.T) {
	stale, gone := newHintNode(t, "n1"), newHintNode(t, "n2")
	gone.srv.Close()
	stale.script(503, "n2", gone.addr())
	c := routedTo([]string{stale.srv.URL}, stale)
	_, err := c.Put(context.Background(), "k", []byte("v"))
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 503 || apiErr.Node != "n1" {
		t.Fatalf("err %v, want n1's 503", err)
	}
	c.router.mu.Lock()
	defer c.router.mu.Unlock()
	if !c.router.isDown(gone.srv.URL) {
		t.Fatal("the hinted leader's address is not marked down")
	}
}
