package cluster_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftkvtest"
)

// TestAFollowerReadsYourOwnWriteOnceItHasAppliedIt writes through the
// shard's leader, then reads on a follower with consistency=stale and the
// write's X-Raftkv-Index as min_index: the follower answers the new value,
// waiting if it must, and says when it cannot have it by the deadline.
func TestAFollowerReadsYourOwnWriteOnceItHasAppliedIt(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	key := keyOnShard(t, "ryow", "shard-1", 2)
	leader := c.Leader("shard-1")
	follower := (leader + 1) % 3
	path := raftkvtest.KeyPath(key)
	third := (leader + 2) % 3
	put := func(via int, v string) uint64 {
		t.Helper()
		r := raftkvtest.Do(http.MethodPut, c.Nodes[via].HTTPAddr, path, []byte(v), nil)
		if r.Status != http.StatusOK {
			t.Fatalf("put %s: %d %s", v, r.Status, r.Body)
		}
		index, err := strconv.ParseUint(r.Header.Get("X-Raftkv-Index"), 10, 64)
		if err != nil || index == 0 || r.Header.Get("X-Raftkv-Term") == "" || r.Header.Get("X-Raftkv-Shard") != "shard-1" {
			t.Fatalf("put %s: headers %v", v, r.Header)
		}
		return index
	}
	read := func(minIndex uint64, timeout string) raftkvtest.Response {
		return raftkvtest.Do(http.MethodGet, c.Nodes[follower].HTTPAddr,
			fmt.Sprintf("%s?consistency=stale&min_index=%d&timeout=%s", path, minIndex, timeout), nil, nil)
	}

	// Through a node that forwards to the leader: the index comes back too.
	first := put(third, "v1")
	if r := read(first, "10s"); r.Status != http.StatusOK || string(r.Body) != "v1" {
		t.Fatalf("follower read at the write's index: %d %q", r.Status, r.Body)
	} else if got, _ := strconv.ParseUint(r.Header.Get("X-Raftkv-Index"), 10, 64); got < first {
		t.Fatalf("the follower answered at index %d, below the write's %d", got, first)
	}

	// Cut the follower off: the next write commits without it.
	c.Disconnect(follower)
	second := put(leader, "v2")
	r := read(second, "300ms")
	if r.Status != http.StatusGatewayTimeout || !strings.Contains(string(r.Body), fmt.Sprintf("not yet %d", second)) {
		t.Fatalf("read at an index the follower lacks: %d %s, want 504 saying how far it got", r.Status, r.Body)
	}
	// Without min_index the cut-off follower answers what it has: stale.
	if r := raftkvtest.Do(http.MethodGet, c.Nodes[follower].HTTPAddr, path+"?consistency=stale", nil, nil); string(r.Body) != "v1" {
		t.Fatalf("plain stale read on the cut-off follower: %d %q, want the old v1", r.Status, r.Body)
	}

	c.Heal()
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		if r := read(second, "2s"); r.Status != http.StatusOK || string(r.Body) != "v2" {
			return fmt.Errorf("after healing: %d %q", r.Status, r.Body)
		}
		return nil
	})
}

func TestMinIndexIsRefusedWhereItMeansNothing(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 2)
	addr := c.Nodes[0].HTTPAddr
	for name, req := range map[string][2]string{
		"on a write":   {http.MethodPut, raftkvtest.KeyPath("k") + "?min_index=3"},
		"on a listing": {http.MethodGet, "/v1/kv?prefix=&min_index=3"},
		"not a number": {http.MethodGet, raftkvtest.KeyPath("k") + "?consistency=stale&min_index=x"},
		"zero":         {http.MethodGet, raftkvtest.KeyPath("k") + "?consistency=stale&min_index=0"},
	} {
		if r := raftkvtest.Do(req[0], addr, req[1], []byte("v"), nil); r.Status != http.StatusBadRequest {
			t.Errorf("min_index %s: %d %s, want 400", name, r.Status, r.Body)
		}
	}
	if r := raftkvtest.Do(http.MethodGet, addr, raftkvtest.KeyPath("k"), nil, nil); r.Status != http.StatusNotFound {
		t.Errorf("the refused write was applied: GET answers %d %s", r.Status, r.Body)
	}
}
