package systemtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// outcome of one write in a crash test.
type outcome int

const (
	acked         outcome = iota // 200: must survive anything
	failed                       // never sent, or answered 4xx/503: must not appear
	indeterminate                // sent, then 504, a broken connection or the deadline: may or may not appear
)

// writeLog records the outcome of every unique-key write.
type writeLog struct {
	mu    sync.Mutex
	out   map[string]outcome
	cause map[string]string // key -> the error that refused it, for failure messages
}

func (w *writeLog) record(key string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out == nil {
		w.out, w.cause = map[string]outcome{}, map[string]string{}
	}
	w.out[key] = classify(err)
	if err != nil {
		w.cause[key] = err.Error()
	}
}

// classify maps the error of a client's write to its outcome: the client
// decides whether a write that failed may have happened.
func classify(err error) outcome {
	switch {
	case err == nil:
		return acked
	case errors.Is(err, client.ErrIndeterminate):
		return indeterminate
	default:
		return failed
	}
}

// TestCrashesDuringCheckpointsAndAppendsLoseNoAcknowledgedWrite runs writers
// while every group checkpoints every few dozen entries, and SIGKILLs a node
// (the leader of a shard, then others) several times mid-load: during log
// appends, during checkpoint writes, right after acknowledged writes. After
// restarting everything, every acknowledged write is present exactly once
// (version 1: unique keys are written once), and no write that was refused is.
func TestCrashesDuringCheckpointsAndAppendsLoseNoAcknowledgedWrite(t *testing.T) {
	skipShort(t)
	c := StartClusterWith(t, Config{Nodes: 3, Shards: 2,
		ExtraArgs: []string{"--snapshot-threshold", "40", "--snapshot-interval", "50ms", "--trailing-logs", "20"}})
	log := &writeLog{}
	clients := map[string]*client.Client{} // by node id; read-only once the writers run
	for _, n := range c.Nodes {
		clients[n.ID] = client.New([]string{n.HTTPAddr})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				running := c.Running()
				if len(running) == 0 {
					continue
				}
				n := running[i%len(running)]
				key := fmt.Sprintf("w%d-%05d", w, i)
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
				_, err := clients[n.ID].Put(ctx, key, []byte(strconv.Itoa(i)))
				cancel()
				log.record(key, err)
			}
		}()
	}
	ackedSoFar := func() int {
		log.mu.Lock()
		defer log.mu.Unlock()
		n := 0
		for _, o := range log.out {
			if o == acked {
				n++
			}
		}
		return n
	}
	for round := 0; round < 3; round++ {
		target := ackedSoFar() + 150
		if err := WaitFor(30*time.Second, func() error {
			if got := ackedSoFar(); got < target {
				return fmt.Errorf("%d of %d writes acknowledged", got, target)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		victim := c.Nodes[round%3]
		if round == 0 {
			if leader, err := c.LeaderOf(t.Context(), "shard-1"); err == nil {
				victim = leader
			}
		}
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := victim.Restart(); err != nil {
			t.Fatalf("restart %s: %v", victim.ID, err)
		}
	}
	close(stop)
	wg.Wait()
	if err := c.WaitConverged(t.Context(), ReadyTimeout, c.Nodes...); err != nil {
		t.Fatalf("cluster did not recover: %v", err)
	}
	// Every node restarts once more from its own checkpoints and log.
	for _, n := range c.Nodes {
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Nodes {
		if err := n.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitConverged(t.Context(), ReadyTimeout, c.Nodes...); err != nil {
		t.Fatalf("cluster did not come back: %v", err)
	}
	counts := map[outcome]int{}
	for key, o := range log.out {
		counts[o]++
		r, err := Do(c.Nodes[0], http.MethodGet, KeyPath(key), nil)
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		switch {
		case o == acked && r.Status != http.StatusOK:
			t.Fatalf("acknowledged write %s lost: %s", key, r)
		case o == failed && r.Status != http.StatusNotFound:
			t.Fatalf("write %s was refused (%s) but is present: %s", key, log.cause[key], r)
		case r.Status == http.StatusOK && r.Header.Get("X-Raftkv-Version") != "1":
			t.Fatalf("%s applied more than once: version %s", key, r.Header.Get("X-Raftkv-Version"))
		}
	}
	t.Logf("writes: %d acknowledged, %d refused, %d indeterminate", counts[acked], counts[failed], counts[indeterminate])
	st, err := c.Nodes[1].Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range st.Groups {
		if g.Name != "meta" && g.LastSnapshotIndex == 0 {
			t.Fatalf("%s never checkpointed: the test did not exercise checkpoints", g.Name)
		}
	}
}
