package systemtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLeaseSurvivesItsHomeLeadersDeathAndThenExpires: real processes. A 5 s
// lease with keys on every shard is kept alive through SIGKILL of its home
// shard's leader; once the keepalives stop, every key goes, on every node,
// and the killed node, restarted, has none of them either.
func TestLeaseSurvivesItsHomeLeadersDeathAndThenExpires(t *testing.T) {
	skipShort(t)
	const shards = 3
	c := StartCluster(t, 3, shards)
	g := mustDo(t, c.Nodes[0], http.MethodPost, "/v1/lease", []byte(`{"ttl":"5s"}`))
	var lease struct {
		ID string `json:"id"`
	}
	if g.Status != http.StatusOK || json.Unmarshal(g.Body, &lease) != nil {
		t.Fatalf("grant: %s", g)
	}
	home, _, _ := strings.Cut(lease.ID, ".")
	var keys []string
	seen := map[string]bool{}
	for i := 0; len(seen) < shards || len(keys) < 9; i++ {
		key := fmt.Sprintf("svc/instance-%02d", i)
		r := mustDo(t, c.Nodes[i%3], http.MethodPut, KeyPath(key)+"?lease="+lease.ID, []byte("up"))
		if r.Status != http.StatusOK {
			t.Fatalf("put %s with the lease: %s", key, r)
		}
		seen[r.Header.Get("X-Raftkv-Shard")] = true
		keys = append(keys, key)
	}

	victim, err := c.WaitLeaderOf(t.Context(), home, 10*time.Second)
	mustOK(t, err)
	var survivors []*Node
	for _, n := range c.Nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	keepalive := func() error {
		var last error
		for _, n := range survivors {
			r, err := Do(n, http.MethodPost, "/v1/lease/"+lease.ID+"/keepalive?timeout=1s", nil)
			if err == nil && r.Status == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("keepalive via %s: %v %v", n.ID, r, err)
		}
		return last
	}
	t.Logf("killing %s, leader of the lease's home %s", victim.ID, home)
	mustOK(t, victim.Kill())
	// Keepalives every second for 8 s (past the TTL), through the failover.
	for range 8 {
		if err := WaitFor(4*time.Second, keepalive); err != nil {
			t.Fatalf("no keepalive got through within 4 s: %v", err)
		}
		time.Sleep(time.Second) // the holder's own pace, not a wait for the cluster
	}
	for _, k := range keys {
		if r := mustDo(t, survivors[0], http.MethodGet, KeyPath(k), nil); r.Status != http.StatusOK {
			t.Fatalf("%s lost while its lease was kept alive: %s", k, r)
		}
	}

	// The holder stops: the lease expires and takes every key with it.
	err = WaitFor(30*time.Second, func() error {
		for _, n := range survivors {
			for _, k := range keys {
				if r, err := Do(n, http.MethodGet, KeyPath(k)+"?consistency=stale", nil); err != nil || r.Status != http.StatusNotFound {
					return fmt.Errorf("%s on %s: %v %v", k, n.ID, r, err)
				}
			}
		}
		return nil
	})
	mustOK(t, err)
	if r := mustDo(t, survivors[1], http.MethodPut, KeyPath("svc/late")+"?lease="+lease.ID, []byte("x")); r.Status != http.StatusNotFound {
		t.Fatalf("put with the expired lease: %s, want 404", r)
	}

	mustOK(t, victim.Restart())
	mustOK(t, c.WaitConverged(t.Context(), ReadyTimeout))
	err = WaitFor(30*time.Second, func() error {
		for _, k := range keys {
			if r, err := Do(victim, http.MethodGet, KeyPath(k)+"?consistency=stale", nil); err != nil || r.Status != http.StatusNotFound {
				return fmt.Errorf("%s on the restarted %s: %v %v", k, victim.ID, r, err)
			}
		}
		return nil
	})
	mustOK(t, err)
}
