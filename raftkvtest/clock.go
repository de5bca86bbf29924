package raftkvtest

import (
	"sync"
	"time"
)

// SkewedClock is a node clock (cluster.Config.Clock) that runs the given
// duration ahead of the machine's, or behind it when negative. It keeps
// the machine's pace and its monotonic reading.
type SkewedClock time.Duration

// Now returns the machine's time shifted by the skew.
func (c SkewedClock) Now() time.Time { return time.Now().Add(time.Duration(c)) }

// ManualClock is a node clock that a test moves forward by hand (Advance),
// on top of the machine's own pace: time still passes as usual, and an
// Advance jumps it ahead. One ManualClock may serve every node of a
// cluster; the zero value starts at the machine's time.
type ManualClock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the machine's time plus every Advance so far.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}
