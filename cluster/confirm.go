package cluster

import "sync"

// confirmer shares leadership confirmations among the linearizable reads
// of one group. A read needs a confirmation that began after it noted the
// commit index; reads that arrive while one is in flight wait and share the
// next one. So under load a leader confirms about once per round trip to
// its followers, not once per read, and a lone read waits for nothing but
// its own confirmation. (raft's VerifyLeader already sends one heartbeat
// for the verifications queued when it goes out, but each call is still a
// trip through raft's leader loop and its futures.)
type confirmer struct {
	mu      sync.Mutex
	running bool // a confirmation is in flight
	waiting []*confirmWaiter
}

type confirmWaiter struct {
	done chan error    // the outcome of the confirmation it shared
	lead chan struct{} // signalled when it is to run the next confirmation
}

// confirm returns once a confirmation that began after the call has ended:
// nil if this node was the leader then. verify does one confirmation.
func (c *confirmer) confirm(verify func() error) error {
	me := &confirmWaiter{done: make(chan error, 1), lead: make(chan struct{}, 1)}
	c.mu.Lock()
	c.waiting = append(c.waiting, me)
	if c.running {
		c.mu.Unlock()
		select {
		case err := <-me.done:
			return err
		case <-me.lead:
			c.mu.Lock()
		}
	} else {
		c.running = true
	}
	// This read runs the next confirmation for everyone waiting now.
	batch := c.waiting
	c.waiting = nil
	c.mu.Unlock()
	err := verify()
	for _, w := range batch {
		w.done <- err
	}
	c.mu.Lock()
	if len(c.waiting) > 0 {
		c.waiting[0].lead <- struct{}{} // hand over, rather than serve others here
	} else {
		c.running = false
	}
	c.mu.Unlock()
	return <-me.done
}
