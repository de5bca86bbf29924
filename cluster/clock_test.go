package cluster

import (
	"sync/atomic"
	"time"
)

// stepClock is the machine's clock moved forward by step: a test waits out
// a timeout of the transaction code without sleeping.
type stepClock struct{ ahead atomic.Int64 }

func (c *stepClock) Now() time.Time { return time.Now().Add(time.Duration(c.ahead.Load())) }

func (c *stepClock) step(d time.Duration) { c.ahead.Add(int64(d)) }
