// Package histo is a fixed-bucket latency histogram that is cheap to update
// from hot paths (a few atomic adds, no lock, no allocation) and that the
// metrics endpoint turns into a Prometheus histogram. Packages below the
// HTTP layer use it so that they need not know about Prometheus.
package histo

import (
	"sync/atomic"
	"time"
)

// Bounds are the buckets' upper bounds in seconds: 50 µs doubling to about
// 13 s, which covers an fdatasync on an idle SSD and a checkpoint of
// millions of keys with the same buckets.
var Bounds = func() []float64 {
	b := make([]float64, 19)
	for i := range b {
		b[i] = 50e-6 * float64(uint64(1)<<i)
	}
	return b
}()

// Histogram counts durations into Bounds. The zero value is ready to use.
type Histogram struct {
	counts [20]atomic.Uint64 // len(Bounds)+1: the last is above every bound
	count  atomic.Uint64
	nanos  atomic.Uint64
}

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(Bounds) && s > Bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.nanos.Add(uint64(max(d, 0)))
	h.count.Add(1)
}

// Snapshot is a histogram's state at one moment, in Prometheus's terms.
type Snapshot struct {
	Count uint64
	// Sum is the total of the durations, in seconds.
	Sum float64
	// Buckets maps each bound in Bounds to how many durations were at most
	// that long (cumulative, as Prometheus wants).
	Buckets map[float64]uint64
}

// Snapshot reads the counters. Observations that land while it reads may
// be counted in some fields and not yet in others.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Buckets: make(map[float64]uint64, len(Bounds))}
	var cum uint64
	for i, b := range Bounds {
		cum += h.counts[i].Load()
		s.Buckets[b] = cum
	}
	s.Count = cum + h.counts[len(Bounds)].Load()
	s.Sum = time.Duration(h.nanos.Load()).Seconds()
	return s
}

// Totals returns how many durations were observed and their sum in
// seconds, for rates and means.
func (h *Histogram) Totals() (count uint64, seconds float64) {
	return h.count.Load(), time.Duration(h.nanos.Load()).Seconds()
}
