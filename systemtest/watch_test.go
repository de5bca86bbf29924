package systemtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/keyspace"
)

// TestWatchSurvivesTheDeathOfItsShardsLeader: a watch served by the
// leader of a shard goes on after that process is killed -9: the client
// moves to a survivor with its cursor, and every acknowledged write under
// the prefix arrives exactly once, each shard's in revision order.
func TestWatchSurvivesTheDeathOfItsShardsLeader(t *testing.T) {
	skipShort(t)
	const shards = 2
	c := StartCluster(t, 3, shards)
	const target = "shard-1"
	victim, err := c.WaitLeaderOf(t.Context(), target, 10*time.Second)
	mustOK(t, err)
	eps := []string{victim.HTTPAddr} // the stream starts on the victim
	var survivors []string
	for _, n := range c.Nodes {
		if n != victim {
			eps = append(eps, n.HTTPAddr)
			survivors = append(survivors, n.HTTPAddr)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	watcher := client.New(eps, client.WithTimeout(20*time.Second))
	writer := client.New(survivors, client.WithTimeout(20*time.Second))
	start, err := watcher.List(ctx, "ws/", "", 0)
	mustOK(t, err)

	var mu sync.Mutex
	seen := map[string]int{}
	lastRev := map[string]uint64{}
	var order []string
	watchErr := make(chan error, 1)
	go func() {
		for e, err := range watcher.Watch(ctx, "ws/", client.WatchFrom(start.Cursor)) {
			if err != nil {
				watchErr <- err
				return
			}
			mu.Lock()
			seen[e.Key]++
			if e.Revision <= lastRev[e.Shard] {
				order = append(order, fmt.Sprintf("%s: %s at %d after %d", e.Shard, e.Key, e.Revision, lastRev[e.Shard]))
			}
			lastRev[e.Shard] = e.Revision
			mu.Unlock()
		}
	}()
	waitSeen := func(keys []string) {
		t.Helper()
		mustOK(t, WaitFor(60*time.Second, func() error {
			select {
			case err := <-watchErr:
				t.Fatalf("the watch ended: %v", err)
			default:
			}
			mu.Lock()
			defer mu.Unlock()
			for _, k := range keys {
				if seen[k] == 0 {
					return fmt.Errorf("%s not seen yet", k)
				}
			}
			return nil
		}))
	}

	// Acknowledged writes; a write whose outcome is unknown is left out
	// of what must arrive, but may still arrive (once).
	var acked []string
	write := func(i int) {
		key := fmt.Sprintf("ws/%03d", i)
		if _, err := writer.Put(ctx, key, []byte("v")); err != nil {
			t.Logf("put %s: %v (outcome unknown)", key, err)
			return
		}
		acked = append(acked, key)
	}
	for i := range 20 {
		write(i)
	}
	waitSeen(acked)
	t.Logf("killing %s (pid %d), leader of %s, which serves the watch", victim.ID, victim.PID(), target)
	mustOK(t, victim.Kill())
	for i := 20; i < 60; i++ {
		write(i)
	}
	waitSeen(acked)
	var inTarget int
	for _, k := range acked {
		if keyspace.ShardFor(k, shards) == target {
			inTarget++
		}
	}
	if inTarget < 10 {
		t.Fatalf("only %d acknowledged writes went to %s", inTarget, target)
	}
	mustOK(t, victim.Restart())
	// Let any duplicate show up before counting.
	write(60)
	waitSeen([]string{"ws/060"})
	mu.Lock()
	defer mu.Unlock()
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s arrived %d times", k, n)
		}
	}
	for _, o := range order {
		t.Errorf("out of order: %s", o)
	}
}
