package raftkvtest

import "time"

// SkewedClock is a node clock (cluster.Config.Clock) that runs the given
// duration ahead of the machine's, or behind it when negative. It keeps
// the machine's pace and its monotonic reading.
type SkewedClock time.Duration

// Now returns the machine's time shifted by the skew.
func (c SkewedClock) Now() time.Time { return time.Now().Add(time.Duration(c)) }
