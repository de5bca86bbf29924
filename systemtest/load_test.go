package systemtest

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// writeLoad is a set of goroutines writing fresh keys through some nodes and
// recording every acknowledged write. Each attempt uses a new key, so an
// attempt whose outcome is unknown never blurs what an acknowledged key must
// hold.
type writeLoad struct {
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu       sync.Mutex
	acked    map[string]string
	outcomes map[string]int // "200", "503", "transport error", ...
	samples  map[string]string
}

// startLoad starts writers goroutines; writer w sends its i-th write to
// nodes[(w+i) % len(nodes)]. They stop at Stop or, at the latest, when the
// test ends.
func startLoad(t *testing.T, prefix string, writers int, nodes []*Node) *writeLoad {
	l := &writeLoad{
		stop:     make(chan struct{}),
		acked:    map[string]string{},
		outcomes: map[string]int{},
		samples:  map[string]string{},
	}
	t.Cleanup(func() { l.Stop() })
	for w := range writers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				n := nodes[(w+i)%len(nodes)]
				key := fmt.Sprintf("%s/w%d/%06d", prefix, w, i)
				val := fmt.Sprintf("w%d-%d-via-%s", w, i, n.ID)
				r, err := Do(n, http.MethodPut, KeyPath(key)+"?timeout=2s", []byte(val))
				l.record(key, val, n, r, err)
			}
		}()
	}
	return l
}

func (l *writeLoad) record(key, val string, n *Node, r *Response, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var outcome, sample string
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		outcome, sample = "connection refused via "+n.ID, err.Error()
	case err != nil:
		outcome, sample = "transport error via "+n.ID, err.Error()
	default:
		outcome, sample = strconv.Itoa(r.Status), r.String()
		if r.Status == http.StatusOK {
			l.acked[key] = val
		}
	}
	l.outcomes[outcome]++
	if _, ok := l.samples[outcome]; !ok {
		l.samples[outcome] = sample
	}
}

// Acked returns how many writes have been acknowledged so far.
func (l *writeLoad) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// waitAcked waits until at least n more writes than before are acknowledged.
func (l *writeLoad) waitAcked(t *testing.T, more int, timeout time.Duration) {
	t.Helper()
	target := l.Acked() + more
	err := WaitFor(timeout, func() error {
		if got := l.Acked(); got < target {
			return fmt.Errorf("%d acknowledged writes, waiting for %d; outcomes %v", got, target, l.Outcomes())
		}
		return nil
	})
	mustOK(t, err)
}

// Outcomes returns a copy of the outcome counts.
func (l *writeLoad) Outcomes() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.outcomes)
}

// Stop stops the writers and returns the acknowledged writes. It may be
// called more than once.
func (l *writeLoad) Stop() map[string]string {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked
}

// checkOutcomes fails the test for any outcome not in allowed, showing one
// sample response for each.
func (l *writeLoad) checkOutcomes(t *testing.T, allowed ...string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	var names []string
	for k := range l.outcomes {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !ok[k] {
			t.Errorf("unexpected write outcome %q (%d times), e.g. %s", k, l.outcomes[k], l.samples[k])
		}
	}
	t.Logf("write outcomes: %v", l.outcomes)
	for _, k := range names {
		if k != "200" {
			t.Logf("  e.g. %s: %s", k, l.samples[k])
		}
	}
}

// verifyAll reads every key of acked through each node with the given
// consistency, a few requests at a time.
func verifyAll(t *testing.T, nodes []*Node, acked map[string]string, consistency string) {
	t.Helper()
	keys := sortedKeys(acked)
	for _, n := range nodes {
		work := make(chan string)
		errs := make(chan error, len(keys))
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range work {
					if err := checkValue(n, k, acked[k], consistency); err != nil {
						errs <- err
					}
				}
			}()
		}
		for _, k := range keys {
			work <- k
		}
		close(work)
		wg.Wait()
		close(errs)
		bad := 0
		for err := range errs {
			if bad < 10 {
				t.Errorf("%v", err)
			}
			bad++
		}
		if bad > 0 {
			t.Fatalf("%s: %d of %d acknowledged writes not readable (%s)", n.ID, bad, len(keys), consistency)
		}
	}
}

// waitCaughtUp waits until n has applied, in every group, everything that
// group's leader had committed when waitCaughtUp was called.
func waitCaughtUp(t *testing.T, c *Cluster, n *Node, timeout time.Duration) {
	t.Helper()
	st, err := n.Status(t.Context())
	mustOK(t, err)
	commit := map[string]uint64{}
	for _, g := range st.Groups {
		l, err := c.WaitLeaderOf(t.Context(), g.Name, 10*time.Second)
		mustOK(t, err)
		lst, err := l.Status(t.Context())
		mustOK(t, err)
		lg, _ := lst.Group(g.Name)
		commit[g.Name] = lg.CommitIndex
	}
	err = WaitFor(timeout, func() error {
		st, err := n.Status(t.Context())
		if err != nil {
			return err
		}
		for name, want := range commit {
			g, ok := st.Group(name)
			if !ok {
				return fmt.Errorf("%s does not list group %s", n.ID, name)
			}
			if g.AppliedIndex < want {
				return fmt.Errorf("%s: %s applied_index %d < leader commit_index %d", n.ID, name, g.AppliedIndex, want)
			}
		}
		return nil
	})
	mustOK(t, err)
}

// TestStopUnderLoad sends SIGTERM to the node that leads the groups while
// writers keep going through every node: the node must exit 0, no write
// through the other nodes may fail, and no acknowledged write may be lost.
func TestStopUnderLoad(t *testing.T) {
	skipShort(t)
	c := StartCluster(t, 3, 4)
	victim, err := c.WaitLeaderOf(t.Context(), "meta", 10*time.Second)
	mustOK(t, err)
	var survivors []*Node
	for _, n := range c.Nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}

	load := startLoad(t, "stop", 6, c.Nodes)
	load.waitAcked(t, 100, 15*time.Second)
	start := time.Now()
	mustOK(t, victim.Stop())
	t.Logf("%s exited 0 %v after SIGTERM under load", victim.ID, time.Since(start).Round(time.Millisecond))
	load.waitAcked(t, 100, 15*time.Second)
	acked := load.Stop()
	// A stopping node hands its leaderships over before it stops serving, so
	// no write gets a 5xx. Requests to the stopped node fail to connect, and
	// a request racing the close of an idle keep-alive connection to the
	// stopping node can fail in transport; both are the client's to retry.
	load.checkOutcomes(t, "200", "connection refused via "+victim.ID, "transport error via "+victim.ID)
	t.Logf("%d acknowledged writes", len(acked))
	verifyAll(t, survivors, acked, "")

	mustOK(t, victim.Restart())
	mustOK(t, c.WaitConverged(t.Context(), ReadyTimeout, c.Nodes...))
	waitCaughtUp(t, c, victim, 30*time.Second)
	verifyAll(t, []*Node{victim}, acked, "stale")
}

// TestTransferLeadership moves a shard's leadership to a named node and
// then to any other node.
func TestTransferLeadership(t *testing.T) {
	skipShort(t)
	c := StartCluster(t, 3, 2)
	for _, to := range []string{"node3", "node2"} {
		r := mustDo(t, c.Nodes[0], http.MethodPost, "/v1/cluster/transfer-leadership",
			[]byte(fmt.Sprintf(`{"group":"shard-2","to":%q}`, to)))
		if r.Status != http.StatusOK {
			t.Fatalf("transfer shard-2 to %s: %s", to, r)
		}
		err := WaitFor(10*time.Second, func() error {
			l, err := c.LeaderOf(t.Context(), "shard-2")
			if err != nil {
				return err
			}
			if l.ID != to {
				return fmt.Errorf("shard-2 led by %s, want %s", l.ID, to)
			}
			return nil
		})
		mustOK(t, err)
	}
	r := mustDo(t, c.Nodes[2], http.MethodPost, "/v1/cluster/transfer-leadership", []byte(`{"group":"shard-2"}`))
	if r.Status != http.StatusOK {
		t.Fatalf("transfer shard-2 to anyone: %s", r)
	}
	err := WaitFor(10*time.Second, func() error {
		l, err := c.LeaderOf(t.Context(), "shard-2")
		if err != nil {
			return err
		}
		if l.ID == "node2" {
			return fmt.Errorf("shard-2 still led by node2")
		}
		return nil
	})
	mustOK(t, err)
	checkServes(t, c.Nodes, "transfer", 6)
}
