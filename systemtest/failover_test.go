package systemtest

import (
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"
)

// TestFailoverKillLeader kills -9 the leader of a shard, keeps writing
// through the survivors until that shard takes writes again, checks that no
// acknowledged write is lost, then restarts the killed node and checks that
// it catches up and serves the same data from its own state.
func TestFailoverKillLeader(t *testing.T) {
	skipShort(t)
	c := StartCluster(t, 3, 4)

	acked := map[string]string{} // key -> value of its one acknowledged write
	for i := range 30 {
		key := fmt.Sprintf("fo/before-%02d", i)
		val := fmt.Sprintf("before %d", i)
		mustPut(t, c.Nodes[i%3], key, val)
		acked[key] = val
	}

	const target = "shard-2"
	victim, err := c.WaitLeaderOf(t.Context(), target, 10*time.Second)
	mustOK(t, err)
	var survivors []*Node
	for _, n := range c.Nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	st, err := victim.Status(t.Context())
	mustOK(t, err)
	var led []string
	for _, g := range st.Groups {
		if g.Leader == victim.ID || g.Leader == victim.RaftAddr {
			led = append(led, g.Name)
		}
	}
	t.Logf("killing %s (pid %d), leader of %v", victim.ID, victim.PID(), led)

	// Background writers through the survivors run across the kill.
	load := startLoad(t, "fo/load", 3, survivors)
	load.waitAcked(t, 30, 10*time.Second)
	killed := time.Now()
	mustOK(t, victim.Kill())

	// Every attempt uses a fresh key, so an attempt with an unknown outcome
	// never muddies what an acknowledged key must hold.
	var (
		recovered time.Duration
		failures  int
		lastFail  string
	)
	deadline := killed.Add(10 * time.Second)
	for i := 0; recovered == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no write reached %s within 10s of killing its leader; %d failed attempts, last: %s", target, failures, lastFail)
		}
		n := survivors[i%2]
		key := fmt.Sprintf("fo/during-%04d", i)
		val := fmt.Sprintf("during %d via %s", i, n.ID)
		r, err := Do(n, http.MethodPut, KeyPath(key)+"?timeout=2s", []byte(val))
		switch {
		case err != nil:
			failures++
			lastFail = err.Error()
		case r.Status != http.StatusOK:
			failures++
			lastFail = r.String()
			if r.Status >= 500 && r.Status != http.StatusServiceUnavailable && r.Status != http.StatusGatewayTimeout {
				t.Errorf("PUT during failover: %s (only 503/504 expected)", r)
			}
		default:
			acked[key] = val
			if r.Header.Get("X-Raftkv-Shard") == target {
				recovered = time.Since(killed)
			}
		}
	}
	t.Logf("%s took writes again %v after the kill (%d failed attempts, last: %s)", target, recovered.Round(time.Millisecond), failures, lastFail)

	// The survivor that took over stood because it saw the leader's process
	// die, not because the heartbeat timeout ran out.
	mustOK(t, WaitFor(10*time.Second, func() error {
		for _, n := range survivors {
			st, err := n.Status(t.Context())
			if err != nil {
				return err
			}
			for _, e := range st.RecentElections {
				if e.Group == target && e.Event == "candidate" && e.At.After(killed) {
					if e.Cause != "leader_gone" {
						return fmt.Errorf("%s stood for %s with cause %q, want leader_gone", n.ID, target, e.Cause)
					}
					return nil
				}
			}
		}
		return fmt.Errorf("no survivor recorded a candidacy for %s since the kill", target)
	}))

	// More writes through both survivors; other shards the victim led may
	// still be electing, so allow a short retry.
	for i := range 20 {
		key := fmt.Sprintf("fo/after-%02d", i)
		val := fmt.Sprintf("after %d", i)
		putRetry(t, survivors[i%2], key, val, 10*time.Second)
		acked[key] = val
	}

	loadAcked := load.Stop()
	load.checkOutcomes(t, "200", "503", "504")
	for k, v := range loadAcked {
		acked[k] = v
	}
	t.Logf("%d acknowledged writes in all", len(acked))
	verifyAll(t, survivors, acked, "")

	// Bring the victim back and wait until it has applied everything the
	// leaders have committed, then read from its local state only.
	mustOK(t, victim.Restart())
	mustOK(t, WaitFor(30*time.Second, func() error { return victim.Ready(t.Context()) }))
	waitCaughtUp(t, c, victim, 30*time.Second)
	verifyAll(t, []*Node{victim}, acked, "stale")
	// And it is a full member again: writes through it work.
	mustPut(t, victim, "fo/via-restarted", "back")
	mustOK(t, checkValue(survivors[0], "fo/via-restarted", "back", ""))
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
