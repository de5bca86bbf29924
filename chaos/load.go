package chaos

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/keyspace"
)

// write is one write of the steady load, on the history clock.
type write struct {
	Shard    string
	Invoke   int64
	Complete int64
	OK       bool
}

// loadGen writes continuously: each writer owns one shard (its keys hash
// there) and sends through one node, moving to the next node when that one
// fails to answer.
type loadGen struct {
	c       *Cluster
	h       *History
	writers int
	think   time.Duration

	// mu guards writes.
	mu     sync.Mutex
	writes []write
}

// keysFor returns n distinct keys of the given shard.
func keysFor(shard string, shards, n int, prefix string) []string {
	var out []string
	for i := 0; len(out) < n && i < 1_000_000; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if keyspace.ShardFor(k, shards) == shard {
			out = append(out, k)
		}
	}
	return out
}

// run blocks until ctx ends.
func (g *loadGen) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range g.writers {
		shard := fmt.Sprintf("shard-%d", 1+i%g.c.Shards)
		keys := keysFor(shard, g.c.Shards, 16, fmt.Sprintf("load/w%d/", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := i
			for seq := 0; ctx.Err() == nil; seq++ {
				p := g.c.Nodes[node%len(g.c.Nodes)]
				inv := g.h.Now()
				r := kvRequest(ctx, p.HTTPAddr, "write", keys[seq%len(keys)], []byte("v"), 0)
				w := write{Shard: shard, Invoke: inv, Complete: g.h.Now(), OK: r.Outcome == OK}
				if ctx.Err() != nil && !w.OK {
					return // cut off by the end of the run: not a server failure
				}
				g.mu.Lock()
				g.writes = append(g.writes, w)
				g.mu.Unlock()
				if !w.OK && (r.Status == 0 || r.Status == http.StatusServiceUnavailable) {
					node++
				}
				if g.think > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(g.think):
					}
				}
			}
		}()
	}
	wg.Wait()
}

func (g *loadGen) snapshot() []write {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]write(nil), g.writes...)
}

// okTimes returns the sorted completion times of the ok writes of shard
// ("" = every shard).
func okTimes(ws []write, shard string) []int64 {
	var out []int64
	for _, w := range ws {
		if w.OK && (shard == "" || w.Shard == shard) {
			out = append(out, w.Complete)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// maxGap returns the longest time without an ok completion inside [from,
// to], counting from the last completion before from and up to the first
// after to (so an outage that spans the interval is measured whole).
func maxGap(times []int64, from, to int64) time.Duration {
	i := sort.Search(len(times), func(i int) bool { return times[i] >= from })
	if i > 0 {
		i--
	}
	var gap int64
	for ; i+1 < len(times) && times[i] <= to; i++ {
		gap = max(gap, times[i+1]-times[i])
	}
	return time.Duration(gap)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
