package cluster_test

import (
	"net/http"
	"testing"

	"github.com/raftkv/raftkv/raftkvtest"
)

// An error says what went wrong once, whether the node asked served the
// request or forwarded it to the shard's leader.
func TestAForwardedErrorReadsExactlyAsTheLeadersOwn(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	key := keyOnShard(t, "cas", "shard-1", 2)
	leader := c.Leader("shard-1")
	follower := (leader + 1) % 3
	casBody := func(node int) string {
		r := raftkvtest.Do(http.MethodPut, c.Nodes[node].HTTPAddr, raftkvtest.KeyPath(key), []byte("v"),
			map[string]string{"If-Match": `"99999"`})
		if r.Status != http.StatusPreconditionFailed {
			t.Fatalf("CAS on a missing key via node%d: %d %s", node+1, r.Status, r.Body)
		}
		return string(r.Body)
	}
	const want = `{"error":{"code":"precondition_failed","message":"precondition failed: key does not exist"}}` + "\n"
	if got := casBody(leader); got != want {
		t.Errorf("from the leader: %q, want %q", got, want)
	}
	if got := casBody(follower); got != want {
		t.Errorf("forwarded: %q, want %q", got, want)
	}
}
