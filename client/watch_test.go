package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/raftkvtest"
)

// TestWatchReconnectsToAnotherNodeByItself: the node serving a watch
// stops; the client goes on at another endpoint from its last cursor, and
// every change arrives exactly once.
func TestWatchReconnectsToAnotherNodeByItself(t *testing.T) {
	rc := raftkvtest.NewCluster(t, 3, 2)
	var eps []string
	for _, n := range rc.Nodes {
		eps = append(eps, n.HTTPAddr)
	}
	c := client.New(eps, client.WithTimeout(30*time.Second))
	// Writes go through the other nodes, which stay up.
	writer := client.New(eps[1:], client.WithTimeout(30*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const total = 20
	list, err := c.List(ctx, "r/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan client.WatchEvent, total)
	errc := make(chan error, 1)
	go func() {
		for e, err := range c.Watch(ctx, "r/", client.WatchFrom(list.Cursor)) {
			if err != nil {
				errc <- err
				return
			}
			events <- e
		}
	}()
	seen := map[string]int{}
	got := func() {
		t.Helper()
		select {
		case e := <-events:
			seen[e.Key]++
		case err := <-errc:
			t.Fatalf("watch ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("no event: %v", ctx.Err())
		}
	}
	for i := 0; i < total/2; i++ {
		if _, err := writer.Put(ctx, fmt.Sprintf("r/%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for len(seen) < total/2 {
		got()
	}
	rc.Stop(0) // the client's first endpoint, which served the stream
	for i := total / 2; i < total; i++ {
		if _, err := writer.Put(ctx, fmt.Sprintf("r/%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for len(seen) < total {
		got()
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", k, n)
		}
	}
}

// TestWatchCompactedAndBlockingReads: a compacted resume point ends the
// watch with a *CompactedError; WaitIndex and WaitCursor block until a
// change.
func TestWatchCompactedAndBlockingReads(t *testing.T) {
	rc := raftkvtest.NewClusterWith(t, 1, 2, func(cfg *cluster.Config) { cfg.WatchHistory = fsm.HistoryLimits{Changes: 2} })
	c := client.New([]string{rc.Nodes[0].HTTPAddr}, client.WithTimeout(30*time.Second))
	ctx := context.Background()
	list, err := c.List(ctx, "z/", "", 0)
	if err != nil || list.Cursor == "" {
		t.Fatalf("list: %+v %v", list, err)
	}
	for i := range 8 {
		if _, err := c.Put(ctx, fmt.Sprintf("z/%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range c.Watch(ctx, "z/", client.WatchFrom(list.Cursor)) {
		var ce *client.CompactedError
		if !errors.As(err, &ce) || !errors.Is(err, client.ErrCompacted) || ce.Oldest == 0 {
			t.Fatalf("watch from a compacted cursor: %v", err)
		}
		break
	}

	v, err := c.Get(ctx, "z/1")
	if err != nil || v.Index == 0 {
		t.Fatalf("get: %+v %v", v, err)
	}
	done := make(chan client.Value, 1)
	go func() {
		nv, _ := c.Get(ctx, "z/1", client.WaitIndex(v.Index, 20*time.Second))
		done <- nv
	}()
	list, _ = c.List(ctx, "z/", "", 0)
	ldone := make(chan client.ListResult, 1)
	go func() {
		nl, _ := c.List(ctx, "z/", "", 0, client.WaitCursor(list.Cursor, 20*time.Second))
		ldone <- nl
	}()
	if _, err := c.Put(ctx, "z/1", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if nv := <-done; string(nv.Value) != "new" || nv.Index <= v.Index {
		t.Fatalf("blocking get: %+v", nv)
	}
	if nl := <-ldone; nl.Cursor == list.Cursor || len(nl.Items) != 8 {
		t.Fatalf("blocking list: %+v", nl)
	}
}

// TestABlockingGetWaitsForAKeyToBeCreated: a Get that finds no key says at
// which index (APIError.Index); waiting from there answers once the key is
// written.
func TestABlockingGetWaitsForAKeyToBeCreated(t *testing.T) {
	rc := raftkvtest.NewClusterWith(t, 1, 2, nil)
	c := client.New([]string{rc.Nodes[0].HTTPAddr}, client.WithTimeout(30*time.Second))
	ctx := context.Background()
	_, err := c.Get(ctx, "job/result")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || !errors.Is(err, client.ErrNotFound) || apiErr.Index == 0 {
		t.Fatalf("get of a missing key: %v, want a not-found APIError with an index", err)
	}
	done := make(chan client.Value, 1)
	go func() {
		v, _ := c.Get(ctx, "job/result", client.WaitIndex(apiErr.Index, 20*time.Second))
		done <- v
	}()
	if _, err := c.Put(ctx, "job/result", []byte("42")); err != nil {
		t.Fatal(err)
	}
	if v := <-done; string(v.Value) != "42" || v.Index <= apiErr.Index {
		t.Fatalf("blocking get from the 404's index: %+v", v)
	}
}
