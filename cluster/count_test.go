package cluster_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftkvtest"
)

func TestListingCanGiveKeysOnlyOrJustTheCountAcrossShards(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 4)
	addr := c.Nodes[1].HTTPAddr // counts fan out to every shard's leader from here
	for i := range 25 {
		if r := raftkvtest.Put(addr, fmt.Sprintf("users/%02d", i), "value"); r.Status != http.StatusOK {
			t.Fatalf("put: %d %s", r.Status, r.Body)
		}
	}
	raftkvtest.Put(addr, "other/1", "x")

	var count struct{ Count int }
	r := raftkvtest.Do(http.MethodGet, addr, "/v1/kv?prefix=users/&count_only=true", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("count: %d %s", r.Status, r.Body)
	}
	if r.JSON(t, &count); count.Count != 25 {
		t.Fatalf("count of users/: %d, want 25", count.Count)
	}
	// A stale count is this node's replicas' and gets there too.
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		raftkvtest.Do(http.MethodGet, c.Nodes[2].HTTPAddr, "/v1/kv?prefix=users/&count_only=true&consistency=stale", nil, nil).JSON(t, &count)
		if count.Count != 25 {
			return fmt.Errorf("stale count %d", count.Count)
		}
		return nil
	})
	r = raftkvtest.Do(http.MethodGet, addr, "/v1/kv?count_only=true", nil, nil)
	r.JSON(t, &count)
	if count.Count != 26 {
		t.Errorf("count of everything: %d, want 26", count.Count)
	}

	r = raftkvtest.Do(http.MethodGet, addr, "/v1/kv?prefix=users/&keys_only=true&limit=10", nil, nil)
	var page struct {
		Items []map[string]any
		More  bool
	}
	r.JSON(t, &page)
	if len(page.Items) != 10 || !page.More || page.Items[0]["key"] != "users/00" {
		t.Fatalf("keys-only page: %d items, more %v, first %v", len(page.Items), page.More, page.Items)
	}
	for _, it := range page.Items {
		if _, ok := it["value"]; ok || it["revision"] == nil {
			t.Fatalf("a keys-only item: %v, want the key and its revisions without the value", it)
		}
	}

	for _, bad := range []string{"count_only=yes", "count_only=true&keys_only=true", "count_only=true&limit=5", "keys_only=1"} {
		if r := raftkvtest.Do(http.MethodGet, addr, "/v1/kv?prefix=users/&"+bad, nil, nil); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "bad_request") {
			t.Errorf("%s: %d %s, want 400", bad, r.Status, r.Body)
		}
	}
}
