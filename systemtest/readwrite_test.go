package systemtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"testing"
)

// TestReadWriteEveryNode writes through every node of a 3-node cluster
// formed with --join and reads every write back through every other node.
func TestReadWriteEveryNode(t *testing.T) {
	skipShort(t)
	const shards = 4
	c := StartCluster(t, 3, shards)

	want := map[string]string{}
	shardsSeen := map[string]int{}
	for i := range 40 {
		w := c.Nodes[i%len(c.Nodes)]
		key := fmt.Sprintf("rw/%s/key-%02d", w.ID, i)
		val := fmt.Sprintf("value %d written via %s", i, w.ID)
		res, r, err := put(w, key, val)
		if err != nil {
			t.Fatalf("%v", err)
		}
		checkServedBy(t, c, "PUT "+key, r)
		if got := r.Header.Get("X-Raftkv-Shard"); got != res.Shard {
			t.Errorf("PUT %q: X-Raftkv-Shard %q, body shard %q", key, got, res.Shard)
		}
		if res.Version != 1 {
			t.Errorf("PUT %q: version %d on create, want 1", key, res.Version)
		}
		if got, wantTag := r.Header.Get("ETag"), etag(res.Revision); got != wantTag {
			t.Errorf("PUT %q: ETag %q, want %q", key, got, wantTag)
		}
		want[key] = val
		shardsSeen[res.Shard]++

		// Linearizable (default) reads through every other node.
		for _, rd := range c.Nodes {
			if rd == w {
				continue
			}
			g := mustDo(t, rd, http.MethodGet, KeyPath(key), nil)
			if g.Status != http.StatusOK || string(g.Body) != val {
				t.Fatalf("GET %q via %s right after PUT via %s: %s, want %q", key, rd.ID, w.ID, g, val)
			}
			checkServedBy(t, c, "GET "+key, g)
			if got := g.Header.Get("X-Raftkv-Shard"); got != res.Shard {
				t.Errorf("GET %q via %s: X-Raftkv-Shard %q, want %q", key, rd.ID, got, res.Shard)
			}
			if got, wantTag := g.Header.Get("ETag"), etag(res.Revision); got != wantTag {
				t.Errorf("GET %q via %s: ETag %q, want %q", key, rd.ID, got, wantTag)
			}
			if got := g.Header.Get("X-Raftkv-Version"); got != "1" {
				t.Errorf("GET %q via %s: X-Raftkv-Version %q, want 1", key, rd.ID, got)
			}
		}
	}
	t.Logf("keys per shard: %v", shardsSeen)
	if len(shardsSeen) != shards {
		t.Errorf("40 keys landed in %d shards (%v), want all %d", len(shardsSeen), shardsSeen, shards)
	}

	// A key nobody wrote.
	g := mustDo(t, c.Nodes[1], http.MethodGet, KeyPath("rw/never-written"), nil)
	checkError(t, "GET missing key", g, http.StatusNotFound, "not_found")

	checkListing(t, c, want)
	checkCAS(t, c)
}

// checkServedBy checks that X-Raftkv-Node names a node of the cluster.
func checkServedBy(t *testing.T, c *Cluster, what string, r *Response) {
	t.Helper()
	id := r.Header.Get("X-Raftkv-Node")
	if c.Node(id) == nil {
		t.Errorf("%s: X-Raftkv-Node %q is not one of %v", what, id, ids(c.Nodes))
	}
}

// checkListing lists everything (empty prefix), a sub-prefix, and pages
// through with limit/after, through different nodes.
func checkListing(t *testing.T, c *Cluster, want map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	all := list(t, c.Nodes[2], "prefix=")
	if got := itemKeys(all); !slices.Equal(got, keys) {
		t.Fatalf("list prefix=\"\": keys\n%v\nwant\n%v", got, keys)
	}
	if all.More {
		t.Errorf("list prefix=\"\": more=true with %d items", len(all.Items))
	}
	for _, it := range all.Items {
		if it.Value == nil || *it.Value != want[it.Key] {
			t.Errorf("list: item %q value %v, want %q", it.Key, it.Value, want[it.Key])
		}
		if it.Version != 1 || it.Revision == 0 {
			t.Errorf("list: item %q version %d revision %d", it.Key, it.Version, it.Revision)
		}
	}

	sub := list(t, c.Nodes[0], "prefix="+url.QueryEscape("rw/node2/"))
	var wantSub []string
	for _, k := range keys {
		if len(k) >= len("rw/node2/") && k[:len("rw/node2/")] == "rw/node2/" {
			wantSub = append(wantSub, k)
		}
	}
	if got := itemKeys(sub); !slices.Equal(got, wantSub) {
		t.Errorf("list prefix=rw/node2/: %v, want %v", got, wantSub)
	}

	// Page through seven at a time.
	var paged []string
	after := ""
	for page := 0; ; page++ {
		if page > len(keys) {
			t.Fatalf("paging does not end")
		}
		q := "prefix=rw/&limit=7"
		if after != "" {
			q += "&after=" + url.QueryEscape(after)
		}
		lr := list(t, c.Nodes[page%3], q)
		if len(lr.Items) > 7 {
			t.Fatalf("limit=7 returned %d items", len(lr.Items))
		}
		paged = append(paged, itemKeys(lr)...)
		if !lr.More {
			break
		}
		if len(lr.Items) == 0 {
			t.Fatalf("more=true with an empty page")
		}
		after = lr.Items[len(lr.Items)-1].Key
	}
	if !slices.Equal(paged, keys) {
		t.Errorf("paged listing\n%v\nwant\n%v", paged, keys)
	}
}

func itemKeys(lr listResult) []string {
	out := make([]string, len(lr.Items))
	for i, it := range lr.Items {
		out[i] = it.Key
	}
	return out
}

// checkCAS exercises If-Match and If-None-Match on PUT and DELETE, sending
// each request through a different node.
func checkCAS(t *testing.T, c *Cluster) {
	t.Helper()
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	key := "cas/counter"

	first := mustPut(t, n1, key, "1")
	second := mustPut(t, n2, key, "2", "If-Match", etag(first.Revision))
	if second.Revision <= first.Revision || second.Version != 2 {
		t.Errorf("CAS write: revision %d→%d version %d, want a higher revision and version 2", first.Revision, second.Revision, second.Version)
	}
	stale := mustDo(t, n3, http.MethodPut, KeyPath(key), []byte("3"), "If-Match", etag(first.Revision))
	checkError(t, "PUT with stale If-Match", stale, http.StatusPreconditionFailed, "precondition_failed")
	exists := mustDo(t, n1, http.MethodPut, KeyPath(key), []byte("4"), "If-None-Match", "*")
	checkError(t, "PUT If-None-Match:* on existing key", exists, http.StatusPreconditionFailed, "precondition_failed")
	mustOK(t, checkValue(n3, key, "2", ""))

	created := mustPut(t, n3, "cas/new", "fresh", "If-None-Match", "*")
	if created.Version != 1 {
		t.Errorf("If-None-Match create: version %d, want 1", created.Version)
	}

	del := mustDo(t, n2, http.MethodDelete, KeyPath(key), nil, "If-Match", etag(first.Revision))
	checkError(t, "DELETE with stale If-Match", del, http.StatusPreconditionFailed, "precondition_failed")
	mustOK(t, checkValue(n1, key, "2", ""))

	for i, wantDeleted := range []bool{true, false} {
		var hdr []string
		if i == 0 {
			hdr = []string{"If-Match", etag(second.Revision)}
		}
		r := mustDo(t, c.Nodes[i], http.MethodDelete, KeyPath(key), nil, hdr...)
		var body struct {
			Deleted *bool `json:"deleted"`
		}
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &body) != nil || body.Deleted == nil || *body.Deleted != wantDeleted {
			t.Errorf("DELETE #%d: %s, want 200 {\"deleted\":%s}", i+1, r, strconv.FormatBool(wantDeleted))
		}
	}
	g := mustDo(t, n3, http.MethodGet, KeyPath(key), nil)
	checkError(t, "GET deleted key", g, http.StatusNotFound, "not_found")
}
