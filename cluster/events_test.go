package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/raftkvtest"
)

// eventLog follows one node's GET /v1/events in the background.
type eventLog struct {
	mu     sync.Mutex
	events []client.Event
	done   chan error
}

func follow(t *testing.T, n *raftkvtest.Node) *eventLog {
	ctx, cancel := context.WithCancel(context.Background())
	l := &eventLog{done: make(chan error, 1)}
	go func() {
		l.done <- client.New([]string{n.HTTPAddr}).Events(ctx, func(e client.Event) error {
			l.mu.Lock()
			l.events = append(l.events, e)
			l.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-l.done; err != nil {
			t.Errorf("event stream of %s: %v", n.ID, err)
		}
	})
	return l
}

// find returns the first event that matches, waiting up to 15 s.
func (l *eventLog) find(t *testing.T, what string, match func(client.Event) bool) client.Event {
	t.Helper()
	var found client.Event
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, e := range l.events {
			if match(e) {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s among %d events", what, len(l.events))
	})
	return found
}

func TestTheEventStreamShowsAFailoverAndACheckpoint(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	leader := c.Leader("shard-1")
	watcher := c.Nodes[(leader+1)%3]
	events := follow(t, watcher)
	// The stream is live once its first event (any) could arrive; a
	// checkpoint proves it, and is itself on the list.
	if _, err := watcher.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	ck := events.find(t, "checkpoint of shard-1", func(e client.Event) bool {
		return e.Type == cluster.EventCheckpoint && e.Group == "shard-1"
	})
	if ck.Node != watcher.ID || ck.Index == 0 || ck.Bytes == 0 {
		t.Errorf("checkpoint event %+v", ck)
	}

	dead := c.Nodes[leader].ID
	c.Disconnect(leader)
	c.Stop(leader)
	e := events.find(t, "new leader of shard-1", func(e client.Event) bool {
		return e.Type == cluster.EventLeader && e.Group == "shard-1" && e.Leader != "" && e.Leader != dead
	})
	if e.Node != watcher.ID || e.Term == 0 {
		t.Errorf("leader event %+v", e)
	}
	events.find(t, "an election on shard-1", func(e client.Event) bool {
		return e.Type == cluster.EventElection && e.Group == "shard-1"
	})
	// Writes go on, and the stream is still open (checked at cleanup).
	if r := raftkvtest.Do(http.MethodPut, watcher.HTTPAddr, raftkvtest.KeyPath("after"), []byte("v"), nil); r.Status != http.StatusOK {
		t.Fatalf("write after failover: %d %s", r.Status, r.Body)
	}
}

func TestAnEventStreamEndsWhenTheNodeStops(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 1)
	ch, cancel := c.Nodes[0].Events()
	defer cancel()
	c.Stop(0)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal(errors.New("the stream stayed open after the node stopped"))
		}
	}
}
