package cluster_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raftkvtest"
)

func TestDeleteByPrefixRemovesEveryKeyUnderItOnEveryShard(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 4)
	addr := c.Nodes[1].HTTPAddr
	for i := range 30 {
		raftkvtest.Put(addr, fmt.Sprintf("tmp/%02d", i), "x")
	}
	raftkvtest.Put(addr, "tmpfile", "keep") // shares "tmp", not "tmp/"
	raftkvtest.Put(addr, "keep/1", "keep")

	r := raftkvtest.Do(http.MethodDelete, addr, "/v1/kv?prefix=tmp/", nil, nil)
	var out struct{ Deleted int }
	if r.Status != http.StatusOK {
		t.Fatalf("delete prefix: %d %s", r.Status, r.Body)
	}
	if r.JSON(t, &out); out.Deleted != 30 {
		t.Fatalf("deleted %d keys, want 30", out.Deleted)
	}
	var count struct{ Count int }
	raftkvtest.Do(http.MethodGet, addr, "/v1/kv?prefix=tmp/&count_only=true", nil, nil).JSON(t, &count)
	if count.Count != 0 {
		t.Errorf("%d keys left under tmp/", count.Count)
	}
	for _, k := range []string{"tmpfile", "keep/1"} {
		if got := raftkvtest.Get(addr, k); got.Status != http.StatusOK {
			t.Errorf("%s, outside the prefix, is gone: %d", k, got.Status)
		}
	}
	// Again: nothing left to delete, not an error.
	raftkvtest.Do(http.MethodDelete, addr, "/v1/kv?prefix=tmp/", nil, nil).JSON(t, &out)
	if out.Deleted != 0 {
		t.Errorf("a repeated delete deleted %d", out.Deleted)
	}

	for _, bad := range []string{"/v1/kv", "/v1/kv?prefix=", "/v1/kv?all=true&prefix=x", "/v1/kv?prefix=x&all=maybe"} {
		if r := raftkvtest.Do(http.MethodDelete, addr, bad, nil, nil); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "bad_request") {
			t.Errorf("DELETE %s: %d %s, want 400", bad, r.Status, r.Body)
		}
	}
	if got := raftkvtest.Get(addr, "keep/1"); got.Status != http.StatusOK {
		t.Fatalf("a refused delete deleted keep/1: %d", got.Status)
	}
	raftkvtest.Do(http.MethodDelete, addr, "/v1/kv?all=true", nil, nil).JSON(t, &out)
	if out.Deleted != 2 {
		t.Errorf("all=true deleted %d keys, want the 2 left", out.Deleted)
	}
}
