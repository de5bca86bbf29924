package cluster_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/raftkvtest"
)

// keyOnShard returns a key with the given prefix that hashes to shard.
func keyOnShard(t *testing.T, prefix, shard string, shards int) string {
	t.Helper()
	for i := 0; i < 10000; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if cluster.ShardFor(k, shards) == shard {
			return k
		}
	}
	t.Fatalf("no key for %s", shard)
	return ""
}

func TestEveryShardElectsALeaderAndEveryNodeIsAVoter(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 4)
	for _, g := range raftkvtest.Groups(4) {
		c.Leader(g)
		for _, n := range c.Nodes {
			var st cluster.GroupStatus
			for _, gs := range n.Status().Groups {
				if gs.Name == g {
					st = gs
				}
			}
			if len(st.Voters) != 3 {
				t.Fatalf("%s on %s: voters %v, want 3", g, n.ID, st.Voters)
			}
		}
	}
}

func TestWriteThroughFollowerIsForwardedToTheShardLeader(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	key := keyOnShard(t, "fwd", "shard-1", 2)
	leader := c.Leader("shard-1")
	follower := (leader + 1) % 3
	resp := raftkvtest.Put(c.Nodes[follower].HTTPAddr, key, "v1")
	if resp.Status != http.StatusOK {
		t.Fatalf("put via follower: %d %s", resp.Status, resp.Body)
	}
	if got := resp.Header.Get("X-Raftkv-Node"); got != c.Nodes[leader].ID {
		t.Fatalf("served by %q, want the leader %q", got, c.Nodes[leader].ID)
	}
	if got := resp.Header.Get("X-Raftkv-Shard"); got != "shard-1" {
		t.Fatalf("shard header %q", got)
	}
	other := (leader + 2) % 3
	got := raftkvtest.Get(c.Nodes[other].HTTPAddr, key)
	if got.Status != http.StatusOK || string(got.Body) != "v1" {
		t.Fatalf("linearizable get via the other follower: %d %q", got.Status, got.Body)
	}
}

// Many writers at once through a follower: every write is forwarded (in
// batch calls), answered for itself, and readable afterwards.
func TestConcurrentWritesThroughAFollowerAllLand(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 1)
	leader := c.Leader("shard-1")
	follower := c.Nodes[(leader+1)%3]
	const writers, each = 32, 10
	var wg sync.WaitGroup
	failed := make(chan string, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				k, v := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("v%d-%d", w, i)
				if resp := raftkvtest.Put(follower.HTTPAddr, k, v); resp.Status != http.StatusOK {
					failed <- fmt.Sprintf("put %s: %d %s", k, resp.Status, resp.Body)
				}
			}
		}()
	}
	wg.Wait()
	close(failed)
	for f := range failed {
		t.Fatal(f)
	}
	for w := range writers {
		for i := range each {
			k, v := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("v%d-%d", w, i)
			if got := raftkvtest.Get(c.Nodes[leader].HTTPAddr, k); got.Status != http.StatusOK || string(got.Body) != v {
				t.Fatalf("%s on the leader: %d %q, want %q", k, got.Status, got.Body, v)
			}
		}
	}
	if st := follower.Status().Forwarded; st.Requests < writers*each || st.Calls == 0 || st.Calls > st.Requests {
		t.Fatalf("forwarding stats on the follower: %+v", st)
	}
}

func TestKillingAShardLeaderElectsAnotherAndLosesNoAcknowledgedWrite(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	leader := c.Leader("shard-2")
	survivor := c.Nodes[(leader+1)%3].HTTPAddr
	acked := map[string]string{}
	write := func(i int) bool {
		k := keyOnShard(t, "ack"+strconv.Itoa(i), "shard-2", 2)
		v := "value-" + strconv.Itoa(i)
		resp := raftkvtest.Do(http.MethodPut, survivor, raftkvtest.KeyPath(k)+"?timeout=1s", []byte(v), nil)
		if resp.Status == http.StatusOK {
			acked[k] = v
			return true
		}
		return false
	}
	for i := 0; i < 20; i++ {
		if !write(i) {
			t.Fatalf("write %d failed before any fault", i)
		}
	}
	// Crash the leader: cut it off, then stop it.
	c.Disconnect(leader)
	c.Stop(leader)
	i := 20
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		i++
		if write(i) {
			return nil
		}
		return fmt.Errorf("write %d not accepted yet", i)
	})
	for j := 0; j < 10; j++ {
		i++
		write(i)
	}
	newLeader := c.Leader("shard-2")
	if newLeader == leader {
		t.Fatalf("stopped node %d still the leader", leader)
	}
	for k, v := range acked {
		got := raftkvtest.Get(survivor, k)
		if got.Status != http.StatusOK || string(got.Body) != v {
			t.Fatalf("acknowledged %s=%s lost: %d %q", k, v, got.Status, got.Body)
		}
	}
	// The old leader comes back and catches up.
	c.Heal()
	c.Restart(leader)
	c.WaitReady()
	back := c.Nodes[leader].HTTPAddr
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		for k, v := range acked {
			got := raftkvtest.Do(http.MethodGet, back, raftkvtest.KeyPath(k)+"?consistency=stale", nil, nil)
			if string(got.Body) != v {
				return fmt.Errorf("%s on restarted node: %d %q", k, got.Status, got.Body)
			}
		}
		return nil
	})
}

func TestConditionalWritesFollowRevisions(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	addr := c.Nodes[0].HTTPAddr
	create := map[string]string{"If-None-Match": "*"}
	first := raftkvtest.Do(http.MethodPut, addr, "/v1/kv/acct", []byte("1"), create)
	if first.Status != http.StatusOK {
		t.Fatalf("create: %d %s", first.Status, first.Body)
	}
	if again := raftkvtest.Do(http.MethodPut, addr, "/v1/kv/acct", []byte("2"), create); again.Status != http.StatusPreconditionFailed || again.ErrorCode() != "precondition_failed" {
		t.Fatalf("second create: %d %s", again.Status, again.Body)
	}
	etag := first.Header.Get("ETag")
	ok := raftkvtest.Do(http.MethodPut, c.Nodes[1].HTTPAddr, "/v1/kv/acct", []byte("3"), map[string]string{"If-Match": etag})
	if ok.Status != http.StatusOK {
		t.Fatalf("CAS with current etag: %d %s", ok.Status, ok.Body)
	}
	var put struct {
		Revision, Version uint64
	}
	ok.JSON(t, &put)
	if put.Version != 2 {
		t.Fatalf("version after two writes = %d", put.Version)
	}
	stale := raftkvtest.Do(http.MethodPut, addr, "/v1/kv/acct", []byte("4"), map[string]string{"If-Match": etag})
	if stale.Status != http.StatusPreconditionFailed {
		t.Fatalf("CAS with old etag: %d %s", stale.Status, stale.Body)
	}
	if got := raftkvtest.Get(c.Nodes[2].HTTPAddr, "acct"); string(got.Body) != "3" || got.Header.Get("X-Raftkv-Version") != "2" {
		t.Fatalf("after CAS: %q version %s", got.Body, got.Header.Get("X-Raftkv-Version"))
	}
	del := raftkvtest.Do(http.MethodDelete, addr, "/v1/kv/acct", nil, map[string]string{"If-Match": etag})
	if del.Status != http.StatusPreconditionFailed {
		t.Fatalf("delete with old etag: %d %s", del.Status, del.Body)
	}
}

func TestListIsSortedAcrossShardsAndPages(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 4)
	for i := 0; i < 25; i++ {
		if r := raftkvtest.Put(c.Nodes[i%3].HTTPAddr, fmt.Sprintf("list/%02d", i), "x"); r.Status != http.StatusOK {
			t.Fatalf("put: %d %s", r.Status, r.Body)
		}
	}
	raftkvtest.Put(c.Nodes[0].HTTPAddr, "other", "y")
	var keys []string
	after := ""
	for page := 0; page < 10; page++ {
		r := raftkvtest.Do(http.MethodGet, c.Nodes[1].HTTPAddr, "/v1/kv?prefix=list/&limit=10&after="+after, nil, nil)
		var body struct {
			Items []struct{ Key, Value string }
			More  bool
		}
		r.JSON(t, &body)
		for _, it := range body.Items {
			keys = append(keys, it.Key)
		}
		if !body.More {
			break
		}
		after = body.Items[len(body.Items)-1].Key
	}
	if len(keys) != 25 {
		t.Fatalf("listed %d keys, want 25: %v", len(keys), keys)
	}
	for i, k := range keys {
		if want := fmt.Sprintf("list/%02d", i); k != want {
			t.Fatalf("key %d = %s, want %s", i, k, want)
		}
	}
}

func TestLeaveRemovesANodeFromEveryGroup(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	r := raftkvtest.Do(http.MethodPost, c.Nodes[0].HTTPAddr, "/v1/cluster/leave", []byte(`{"id":"node3"}`), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("leave: %d %s", r.Status, r.Body)
	}
	for _, g := range c.Nodes[0].Status().Groups {
		for _, v := range append(g.Voters, g.Nonvoters...) {
			if v == "node3" {
				t.Fatalf("node3 still in %s", g.Name)
			}
		}
	}
	if r := raftkvtest.Put(c.Nodes[1].HTTPAddr, "after-leave", "ok"); r.Status != http.StatusOK {
		t.Fatalf("write after leave: %d %s", r.Status, r.Body)
	}
	unknown := raftkvtest.Do(http.MethodPost, c.Nodes[0].HTTPAddr, "/v1/cluster/leave", []byte(`{"id":"node9"}`), nil)
	if unknown.Status != http.StatusNotFound || unknown.ErrorCode() != "not_found" {
		t.Fatalf("leave unknown: %d %s", unknown.Status, unknown.Body)
	}
}

func TestTransferLeadershipMovesTheLeader(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 1)
	leader := c.Leader("shard-1")
	target := c.Nodes[(leader+1)%3].ID
	r := raftkvtest.Do(http.MethodPost, c.Nodes[(leader+2)%3].HTTPAddr, "/v1/cluster/transfer-leadership",
		[]byte(`{"group":"shard-1","to":"`+target+`"}`), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("transfer: %d %s", r.Status, r.Body)
	}
	if got := c.Nodes[c.Leader("shard-1")].ID; got != target {
		t.Fatalf("leader after transfer = %s, want %s", got, target)
	}
}

// TestAVoterWhoseDiskWasWipedRejoinsAfresh: node3 loses its data dir while
// still a voter and starts again on the same addresses with --join. It must
// not be taken back as the voter it was (it acknowledged entries it no
// longer has): its old membership is replaced, it catches up, and it serves
// every acknowledged write.
func TestAVoterWhoseDiskWasWipedRejoinsAfresh(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	for i := 0; i < 30; i++ {
		if r := raftkvtest.Put(c.Nodes[i%3].HTTPAddr, fmt.Sprintf("w%02d", i), "v"); r.Status != http.StatusOK {
			t.Fatalf("put: %d %s", r.Status, r.Body)
		}
	}
	// Nothing is written while node3 is away, so a shard's log grows only
	// if its membership is rewritten (remove, add as non-voter, promote).
	before := map[string]uint64{}
	for _, g := range c.Nodes[0].Status().Groups {
		before[g.Name] = g.LastLogIndex
	}
	c.Stop(2)
	c.RestartWiped(2)
	c.WaitReady()
	for _, g := range c.Nodes[0].Status().Groups {
		if g.Name != "meta" && g.LastLogIndex < before[g.Name]+3 {
			t.Fatalf("%s: log went from %d to %d: the wiped voter was taken back as it was", g.Name, before[g.Name], g.LastLogIndex)
		}
	}
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("w%02d", i)
		got := raftkvtest.Do(http.MethodGet, c.Nodes[2].HTTPAddr, raftkvtest.KeyPath(k)+"?consistency=stale", nil, nil)
		if got.Status != http.StatusOK || string(got.Body) != "v" {
			t.Fatalf("%s on the rejoined node: %d %q", k, got.Status, got.Body)
		}
	}
	for _, g := range c.Nodes[0].Status().Groups {
		if len(g.Voters) != 3 {
			t.Fatalf("%s voters %v, want all three", g.Name, g.Voters)
		}
	}
}

// leaderCounts returns how many groups each node leads, as node1 sees it.
func leaderCounts(c *raftkvtest.Cluster) map[string]int {
	counts := map[string]int{}
	for _, n := range c.Nodes {
		counts[n.ID] = 0
	}
	for _, g := range c.Nodes[0].Status().Groups {
		counts[g.Leader]++
	}
	return counts
}

// TestLeadershipSpreadsOverTheNodes: the bootstrapping node starts out
// leading every group; balancing hands groups over until no node leads two
// more than another, and then leaves them alone.
func TestLeadershipSpreadsOverTheNodes(t *testing.T) {
	c := raftkvtest.NewClusterWith(t, 3, 4, func(cfg *cluster.Config) { cfg.BalanceInterval = 100 * time.Millisecond })
	// Settled: every group has a leader, no node leads two more than
	// another, and the picture holds across several balancing rounds (a
	// snapshot taken mid-transfer shows a group without a leader, or a
	// spread the next round changes).
	var settled map[string]int
	raftkvtest.Eventually(t, 30*time.Second, func() error {
		counts := leaderCounts(c)
		if counts[""] > 0 {
			return fmt.Errorf("a group has no leader yet: %v", counts)
		}
		lo, hi := 99, 0
		for _, k := range counts {
			lo, hi = min(lo, k), max(hi, k)
		}
		if hi-lo > 1 {
			return fmt.Errorf("leaders per node %v", counts)
		}
		time.Sleep(500 * time.Millisecond) // five balancing rounds
		if again := leaderCounts(c); fmt.Sprint(again) != fmt.Sprint(counts) {
			return fmt.Errorf("still moving: %v then %v", counts, again)
		}
		settled = counts
		return nil
	})
	// Writes keep working on every shard, and nothing moves any more.
	for i := 0; i < 20; i++ {
		if r := raftkvtest.Put(c.Nodes[i%3].HTTPAddr, fmt.Sprintf("b%d", i), "x"); r.Status != http.StatusOK {
			t.Fatalf("put: %d %s", r.Status, r.Body)
		}
	}
	if now := leaderCounts(c); fmt.Sprint(now) != fmt.Sprint(settled) {
		t.Fatalf("leadership kept moving: %v then %v", settled, now)
	}
}
