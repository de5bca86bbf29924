package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/raftkv/raftkv/client"
)

var benchHelp = cmdHelpText{
	usage:   "raftkv bench [flags]",
	summary: "measure throughput and latency against a cluster",
	description: `Drives load against a running cluster and reports throughput and latency.
Each of --clients workers sends one request at a time, spread over the
--endpoints round-robin, for --duration. --op put writes --value-size bytes
to random keys among --keys; get reads them (linearizable, or --stale);
mixed does half of each. Keys are written first for get and mixed.`,
	examples: []string{
		"raftkv bench --endpoints 127.0.0.1:8080,127.0.0.1:8081,127.0.0.1:8082 --clients 64 --duration 10s",
		"raftkv bench --op get --stale -o json",
	},
}

// benchResult is what bench prints with -o json.
type benchResult struct {
	Op        string  `json:"op"`
	Clients   int     `json:"clients"`
	Seconds   float64 `json:"seconds"`
	OK        int     `json:"ok"`
	Errors    int     `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	LastError string  `json:"last_error,omitempty"`
}

func cmdBench(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("bench", benchHelp, stdout, stderr)
	clients := inv.fs.Int("clients", 16, "concurrent workers")
	duration := inv.fs.Duration("duration", 10*time.Second, "how long to run")
	op := inv.fs.String("op", "put", "put, get or mixed")
	valueSize := inv.fs.Int("value-size", 100, "bytes per value")
	keys := inv.fs.Int("keys", 10000, "size of the key space")
	stale := inv.fs.Bool("stale", false, "gets read the local replica (consistency=stale)")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		return inv.usageError("unexpected argument %q", pos[0])
	case *op != "put" && *op != "get" && *op != "mixed":
		return inv.usageError("--op must be put, get or mixed")
	case *clients < 1 || *keys < 1 || *valueSize < 0 || *duration <= 0:
		return inv.usageError("--clients, --keys and --duration must be positive")
	}
	base := inv.client()
	eps := base.Endpoints()
	value := make([]byte, *valueSize)
	key := func(i int) string { return fmt.Sprintf("bench/%08d", i) }
	var readOpts []client.ReadOption
	if *stale {
		readOpts = append(readOpts, client.Stale())
	}
	if *op != "put" {
		for i := 0; i < *keys; i++ {
			if _, err := base.Put(context.Background(), key(i), value); err != nil {
				return inv.fail(fmt.Errorf("preloading keys: %w", err))
			}
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	res := benchResult{Op: *op, Clients: *clients}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *clients; w++ {
		c := base.At(eps[w%len(eps)])
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			var mine []time.Duration
			var errs int
			var last error
			for ctx.Err() == nil {
				k := key(rng.IntN(*keys))
				// Each request gets its own deadline: the end of the run
				// stops new requests but does not cut off those in flight.
				rctx, rcancel := context.WithTimeout(context.Background(), inv.timeout)
				t0 := time.Now()
				var err error
				if *op == "put" || (*op == "mixed" && rng.IntN(2) == 0) {
					_, err = c.Put(rctx, k, value)
				} else {
					_, err = c.Get(rctx, k, readOpts...)
				}
				rcancel()
				if err != nil {
					errs++
					last = err
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, mine...)
			res.Errors += errs
			if last != nil {
				res.LastError = last.Error()
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.OK = len(lat)
	res.OpsPerSec = float64(res.OK) / res.Seconds
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = pct(0.50), pct(0.90), pct(0.99), pct(1)
	if inv.json() {
		_ = printJSON(stdout, res)
	} else {
		fmt.Fprintf(stdout, "%s: %d ok, %d errors in %.1fs with %d clients: %.0f ops/s; latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			res.Op, res.OK, res.Errors, res.Seconds, res.Clients, res.OpsPerSec, res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs)
		if res.LastError != "" {
			fmt.Fprintf(stdout, "last error: %s\n", res.LastError)
		}
	}
	if res.OK == 0 {
		return 1
	}
	return 0
}
