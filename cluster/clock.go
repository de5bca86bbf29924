package cluster

import "time"

// Clock tells a node the time. Every time the transaction code reads
// (coordinator deadlines, the stamps a leader writes into its entries, the
// ages recovery and retention compare) comes from the node's Clock, so a
// test can run each node of one process on its own skewed clock.
//
// A node only ever compares times from its own Clock: what crosses between
// nodes is a duration (a prepare's time to live), never an instant, and a
// stamp another node wrote is never compared with this node's clock (see
// txn_clock.go).
type Clock interface {
	// Now returns the current time. Like time.Now, it carries a monotonic
	// reading, so the difference of two results is immune to clock steps.
	Now() time.Time
}

// systemClock is the machine's clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
