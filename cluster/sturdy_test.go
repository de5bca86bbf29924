package cluster_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/raftkvtest"
)

// writeLoad runs writers that put distinct keys through every node until
// stop closes, and returns each response status with the keys acknowledged.
func writeLoad(t *testing.T, c *raftkvtest.Cluster, writers int, prefix string, stop <-chan struct{}) (statuses func() map[int]int, acked func() []string, wait func()) {
	t.Helper()
	var mu sync.Mutex
	counts := map[int]int{}
	var ok []string
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := c.Nodes[w%len(c.Nodes)].HTTPAddr
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("%s/%d/%d", prefix, w, i)
				resp := raftkvtest.Do(http.MethodPut, addr, raftkvtest.KeyPath(key)+"?timeout=5s", []byte("v"), nil)
				mu.Lock()
				counts[resp.Status]++
				if resp.Status == http.StatusOK {
					ok = append(ok, key)
				}
				if resp.Status >= 500 {
					t.Logf("put %s via %s: %d %s", key, addr, resp.Status, resp.Body)
				}
				if resp.Status == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After")
				}
				mu.Unlock()
			}
		}()
	}
	statuses = func() map[int]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[int]int{}
		for k, v := range counts {
			out[k] = v
		}
		return out
	}
	acked = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), ok...)
	}
	return statuses, acked, wg.Wait
}

func TestLeadershipTransfersUnderWriteLoadFailNoRequest(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 1)
	c.Leader("shard-1")
	stop := make(chan struct{})
	statuses, acked, wait := writeLoad(t, c, 16, "moving", stop)
	// Hand shard-1 round the nodes while the writers keep going.
	for move := 0; move < 6; move++ {
		from := c.Leader("shard-1")
		to := c.Nodes[(from+1)%3].ID
		body := fmt.Sprintf(`{"group":"shard-1","to":%q}`, to)
		resp := raftkvtest.Do(http.MethodPost, c.Nodes[move%3].HTTPAddr, "/v1/cluster/transfer-leadership", []byte(body), nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("transfer to %s: %d %s", to, resp.Status, resp.Body)
		}
		time.Sleep(200 * time.Millisecond) // let writes flow under the new leader
	}
	close(stop)
	wait()
	got := statuses()
	if got[http.StatusOK] == 0 {
		t.Fatalf("no write succeeded: %v", got)
	}
	for status, n := range got {
		if status != http.StatusOK {
			t.Errorf("%d writes answered %d during planned transfers (want every write 200): %v", n, status, got)
		}
	}
	// Every acknowledged write is there.
	leader := c.Nodes[c.Leader("shard-1")].HTTPAddr
	for _, k := range acked() {
		if r := raftkvtest.Get(leader, k); r.Status != http.StatusOK {
			t.Fatalf("acknowledged %s: read %d %s", k, r.Status, r.Body)
		}
	}
}

func TestAnOverloadedLeaderAnswers429AndKeepsLeading(t *testing.T) {
	c := raftkvtest.NewClusterWith(t, 3, 1, func(cfg *cluster.Config) { cfg.MaxPendingWrites = 2 })
	leader := c.Leader("shard-1")
	term := c.Nodes[leader].Status().Groups[1].Term
	stop := make(chan struct{})
	statuses, acked, wait := writeLoad(t, c, 32, "crowd", stop)
	raftkvtest.Eventually(t, 30*time.Second, func() error {
		if s := statuses(); s[http.StatusTooManyRequests] == 0 || s[http.StatusOK] == 0 {
			return fmt.Errorf("statuses so far %v: want both 200 and 429", s)
		}
		return nil
	})
	close(stop)
	wait()
	for status, n := range statuses() {
		if status != http.StatusOK && status != http.StatusTooManyRequests {
			t.Errorf("%d writes answered %d; overload must answer 429, nothing else", n, status)
		}
	}
	st := c.Nodes[leader].Status().Groups[1]
	if st.Term != term || st.Leader != c.Nodes[leader].ID {
		t.Errorf("leadership moved under overload: term %d -> %d, leader %s", term, st.Term, st.Leader)
	}
	r := raftkvtest.Get(c.Nodes[leader].HTTPAddr, acked()[0])
	if r.Status != http.StatusOK || !strings.EqualFold(string(r.Body), "v") {
		t.Fatalf("acknowledged write not readable: %d %s", r.Status, r.Body)
	}
}

// A write whose leader is cut off and steps down before it commits is not
// answered "outcome unknown": the old leader learns from the new one that its
// entry was overwritten, and the write is retried there and applied once.
func TestAWriteWhoseLeaderLostItsQuorumIsRetriedNotAnswered504(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 1)
	leader := c.Leader("shard-1")
	old := c.Nodes[leader]
	c.Disconnect(leader)
	done := make(chan raftkvtest.Response, 1)
	go func() {
		done <- raftkvtest.Do(http.MethodPut, old.HTTPAddr, raftkvtest.KeyPath("cut-off")+"?timeout=20s", []byte("once"), nil)
	}()
	// The cut-off leader steps down after its lease; the others elect a
	// leader of their own.
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		for i, n := range c.Nodes {
			if i != leader && n.Status().Groups[1].State == "Leader" {
				return nil
			}
		}
		return fmt.Errorf("no new leader of shard-1 among the connected nodes yet")
	})
	c.Heal()
	var resp raftkvtest.Response
	select {
	case resp = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the write to the cut-off leader never returned")
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("write through the cut-off leader: %d %s (want 200: its outcome can be found out)", resp.Status, resp.Body)
	}
	now := c.Nodes[c.Leader("shard-1")].HTTPAddr
	r := raftkvtest.Get(now, "cut-off")
	if r.Status != http.StatusOK || string(r.Body) != "once" {
		t.Fatalf("read back: %d %s", r.Status, r.Body)
	}
	if v := r.Header.Get("X-Raftkv-Version"); v != "1" {
		t.Fatalf("the write was applied %s times", v)
	}
}

// A keyed write whose leader is cut off after taking it may have been
// applied; when the deadline passes before any leader can say, the answer
// is 504 (outcome unknown), never 503 (which tells the client nothing
// happened), however later attempts went.
func TestAKeyedWriteThatMayHaveAppliedIsNeverAnsweredUnavailable(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 1)
	leader := c.Leader("shard-1")
	old := c.Nodes[leader]
	c.Disconnect(leader)
	defer c.Heal()
	resp := raftkvtest.Do(http.MethodPut, old.HTTPAddr, raftkvtest.KeyPath("cut-off")+"?timeout=3s", []byte("maybe"),
		map[string]string{"Idempotency-Key": "cut-off-1"})
	if resp.Status != http.StatusGatewayTimeout {
		t.Fatalf("keyed write through a leader cut off with it: %d %s (want 504: it may have been applied)", resp.Status, resp.Body)
	}
}
