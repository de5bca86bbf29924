package cluster

import (
	"sync"
	"time"
)

// Marking a record resolved is bookkeeping: it lets the primary forget the
// record once the retention has passed, and it tells recovery that no
// participant is left to resolve. Nothing waits for it, yet sent at once
// it is a raft entry of its own, fsynced on every node while the next
// transactions' prepares and decides queue behind it. So the coordinator
// gathers its marks for markGather and sends the gathered ones together:
// proposed at the same moment, they share the leaders' log writes, and a
// lone client's stream of transactions makes one mark write per
// markGather instead of one per transaction.
//
// A mark that is lost (the node stops while it waits, or its primary has
// no leader) is what recovery already handles: a decided record not
// marked after RecoveryTimeout is resolved again and marked.
const markGather = 10 * time.Millisecond

// resolvedMarks holds the marks waiting to be sent, by primary. At most one
// sender runs; it is started by the first mark to arrive when none is
// running and exits once a gathering window brought no marks.
type resolvedMarks struct {
	// window waits out one gathering window and reports false if the node
	// stopped meanwhile; nil is markGather on the machine's clock (tests
	// hold the window open instead).
	window func(stop <-chan struct{}) bool

	mu      sync.Mutex
	pending map[string][]string
	sending bool
}

func gatherWindow(stop <-chan struct{}) bool {
	t := time.NewTimer(markGather)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// add queues the mark of id's record on primary, starting a sender if none
// is running.
func (m *resolvedMarks) add(c *coordinator, primary, id string) {
	m.mu.Lock()
	if m.pending == nil {
		m.pending = map[string][]string{}
	}
	m.pending[primary] = append(m.pending[primary], id)
	start := !m.sending
	m.sending = true
	m.mu.Unlock()
	if start {
		c.spawn(func() { m.send(c) })
	}
}

// take returns the queued marks, or nil (and ends the sender's turn) when
// there are none.
func (m *resolvedMarks) take() map[string][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	batch := m.pending
	m.pending = nil
	if len(batch) == 0 {
		m.sending = false
	}
	return batch
}

// send is the sender: after each gathering window it proposes every queued
// mark at once and waits for them, until a window brings none.
func (m *resolvedMarks) send(c *coordinator) {
	window := m.window
	if window == nil {
		window = gatherWindow
	}
	for {
		if !window(c.stop) {
			return // recovery marks what is left
		}
		batch := m.take()
		if batch == nil {
			return
		}
		ctx, cancel := detached(c.stop, 30*time.Second)
		var wg sync.WaitGroup
		for primary, ids := range batch {
			for _, id := range ids {
				wg.Go(func() {
					if err := c.shards.markResolvedOn(ctx, primary, id); err != nil {
						c.logger.Debug("transaction not marked resolved; recovery will mark it", "txn", id, "error", err)
					}
				})
			}
		}
		wg.Wait()
		cancel()
	}
}
