package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/keyspace"
)

var benchHelp = cmdHelpText{
	usage:   "raftkv bench [flags]",
	summary: "measure throughput and latency against a cluster",
	description: `Drives load against a running cluster and reports throughput and latency.
Each of --clients workers sends one request at a time, spread over the
--endpoints round-robin, for --duration. --op put writes --value-size bytes
to random keys among --keys; get reads them (linearizable, or --stale);
mixed reads with probability --read-ratio and writes otherwise; txn runs a
transfer between two keys of different shards: one transaction with a
compare (the first key's version > 0) and a put of each key, so every one
is a cross-shard (two-phase commit) transaction. Keys are written first for
get, mixed and txn (bench says so on stderr, and how long it took). Keys
live under --prefix (default bench/); when the run ends bench deletes every
key under it (a prefix delete; etcd: deleterange), unless --cleanup=false.

--target etcd sends the same load to an etcd 3.4 cluster through its JSON
gateway on the client port (POST /v3/kv/put, /v3/kv/range and /v3/kv/txn,
the same compare and two puts), so one client measures both systems: gets
are linearizable there too, or serializable with --stale. --token is not
sent to etcd; the endpoints default to 127.0.0.1:2379. --target etcd-grpc
sends the same requests through etcd's gRPC API with etcd's own Go client
(clientv3), one client (an HTTP/2 connection to each endpoint, calls
balanced over them) per 16 workers: the path Go programs use, and the
reference for the gateway's figures.

The load is spread over --endpoints, as plain HTTP clients would send it,
whatever --no-leader-routing says; --leader-aware sends each key request
(and each transaction) straight to the leader of its (first) key's shard
instead.

Latencies go into an HDR histogram (microseconds, 3 significant digits); the
report gives p50, p90, p99, p99.9 and max. A request that fails counts as an
error, not in the latencies. With -o json the report also gives
client_cpu_ms, the CPU (user and system) bench itself spent during the run:
on a machine the servers share, the client's cost takes from theirs.`,
	examples: []string{
		"raftkv bench --endpoints 127.0.0.1:8080,127.0.0.1:8081,127.0.0.1:8082 --clients 64 --duration 10s",
		"raftkv bench --op get --stale -o json",
		"raftkv bench --op mixed --read-ratio 0.9 --clients 64",
		"raftkv bench --op txn --clients 1 --leader-aware",
		"raftkv bench --target etcd --endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 --clients 64",
		"raftkv bench --target etcd-grpc --clients 64",
	},
}

// Targets of --target.
const (
	benchRaftkv   = "raftkv"
	benchEtcd     = "etcd"
	benchEtcdGRPC = "etcd-grpc"
)

// defaultEtcdEndpoint is etcd's client port, the endpoint of --target etcd
// and etcd-grpc when --endpoints is not given.
const defaultEtcdEndpoint = "127.0.0.1:2379"

// benchResult is what bench prints with -o json. Scripts read these field
// names: add fields, do not rename them.
type benchResult struct {
	Target    string  `json:"target"`
	Op        string  `json:"op"`
	ReadRatio float64 `json:"read_ratio,omitempty"` // mixed only
	Clients   int     `json:"clients"`
	Seconds   float64 `json:"seconds"`
	OK        int     `json:"ok"`
	Errors    int     `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p999_ms"`
	MaxMs     float64 `json:"max_ms"`
	// ClientCPUMs is the CPU (user and system) this bench process spent
	// during the run: on a machine the servers share, the client's own
	// cost per request takes from theirs.
	ClientCPUMs float64 `json:"client_cpu_ms"`
	LastError   string  `json:"last_error,omitempty"`
}

// benchConn is one worker's way to the system under test. Each call is one
// request, answered before it returns.
type benchConn interface {
	put(ctx context.Context, key string, value []byte) error
	get(ctx context.Context, key string) error
	// txn writes value to both keys in one transaction that first checks
	// that a exists; a failed compare is an error, since the load is then
	// not the one asked for.
	txn(ctx context.Context, a, b string, value []byte) error
	// deletePrefix deletes every key under prefix (--cleanup) and says how
	// many it deleted.
	deletePrefix(ctx context.Context, prefix string) (int64, error)
}

func cmdBench(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("bench", benchHelp, stdout, stderr)
	target := inv.fs.String("target", benchRaftkv, "system to drive: raftkv, etcd through its v3 JSON gateway, or etcd-grpc through gRPC with etcd's Go client")
	clients := inv.fs.Int("clients", 16, "concurrent workers")
	duration := inv.fs.Duration("duration", 10*time.Second, "how long to run")
	op := inv.fs.String("op", "put", "put, get, mixed or txn")
	readRatio := inv.fs.Float64("read-ratio", 0.5, "share of gets in --op mixed, from 0 to 1")
	valueSize := inv.fs.Int("value-size", 100, "bytes per value")
	keys := inv.fs.Int("keys", 10000, "size of the key space")
	stale := inv.fs.Bool("stale", false, "gets read the local replica (raftkv consistency=stale, etcd serializable)")
	prefix := inv.fs.String("prefix", "bench/", "write the keys under this `PREFIX`")
	cleanup := inv.fs.Bool("cleanup", true, "delete every key under --prefix when done (--cleanup=false keeps them)")
	cpuProfile := inv.fs.String("cpuprofile", "", "write a Go CPU profile of this bench process during the measured run to `FILE` (for go tool pprof)")
	leaderAware := inv.fs.Bool("leader-aware", false, "raftkv: send each key to its shard's leader (learnt from GET /v1/cluster and every answer) instead of spreading requests over --endpoints")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		return inv.usageError("unexpected argument %q", pos[0])
	case *target != benchRaftkv && *target != benchEtcd && *target != benchEtcdGRPC:
		return inv.usageError("--target must be raftkv, etcd or etcd-grpc")
	case *op != "put" && *op != "get" && *op != "mixed" && *op != "txn":
		return inv.usageError("--op must be put, get, mixed or txn")
	case *readRatio < 0 || *readRatio > 1:
		return inv.usageError("--read-ratio must be between 0 and 1")
	case *clients < 1 || *keys < 1 || *valueSize < 0 || *duration <= 0:
		return inv.usageError("--clients, --keys and --duration must be positive")
	case *op == "txn" && *keys < 2:
		return inv.usageError("--op txn needs --keys of at least 2")
	case *prefix == "":
		return inv.usageError("--prefix must not be empty: --cleanup deletes everything under it")
	}
	if *target != benchRaftkv && !inv.flagGiven("endpoints") {
		inv.endpoints = defaultEtcdEndpoint
	}
	if *leaderAware && *target != benchRaftkv {
		return inv.usageError("--leader-aware is for --target raftkv")
	}
	if *leaderAware && inv.noLeaderRouting {
		return inv.usageError("--leader-aware and --no-leader-routing contradict each other")
	}
	conns, closeConns, err := inv.benchConns(*target, *clients, *stale, *leaderAware)
	if err != nil {
		return inv.fail(err)
	}
	defer closeConns()
	value := make([]byte, *valueSize)
	key := func(i int) string { return fmt.Sprintf("%s%08d", *prefix, i) }
	if *cleanup {
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), inv.timeout)
			defer cancel()
			if n, err := conns[0].deletePrefix(ctx, *prefix); err != nil {
				fmt.Fprintf(stderr, "bench: could not delete the keys under %q: %v\n", *prefix, err)
			} else {
				fmt.Fprintf(stderr, "bench: deleted the %d keys under %q (--cleanup=false keeps them)\n", n, *prefix)
			}
		}()
	}
	var partner []int // with --op txn, the other key of key i's transfers
	if *op == "txn" {
		shards := 0 // etcd has one key space: any other key will do
		if *target == benchRaftkv {
			if shards, err = inv.benchShards(); err != nil {
				return inv.fail(err)
			}
		}
		if partner, err = benchPairs(*keys, key, shards); err != nil {
			return inv.fail(err)
		}
	}
	if *op != "put" {
		fmt.Fprintf(stderr, "bench: writing the %d keys under %q that --op %s reads...\n", *keys, *prefix, *op)
		started := time.Now()
		if err := benchPreload(conns, *keys, key, value, inv.timeout); err != nil {
			return inv.fail(fmt.Errorf("preloading keys: %w", err))
		}
		fmt.Fprintf(stderr, "bench: wrote them in %.1fs; running for %v\n", time.Since(started).Seconds(), *duration)
	}

	// One histogram for all workers: recording takes nanoseconds, so the
	// lock costs nothing next to a request, and memory stays one
	// histogram's whatever --clients is. Values are microseconds, up to a
	// request's deadline.
	hist := hdrhistogram.New(1, (inv.timeout + time.Second).Microseconds(), 3)
	var mu sync.Mutex
	res := benchResult{Target: *target, Op: *op, Clients: *clients}
	if *op == "mixed" {
		res.ReadRatio = *readRatio
	}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	stopProfile := func() {}
	if *cpuProfile != "" {
		if stopProfile, err = startCPUProfile(*cpuProfile); err != nil {
			return inv.fail(err)
		}
	}
	cpuBefore := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for w, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			var errs int
			var last error
			for ctx.Err() == nil {
				i := rng.IntN(*keys)
				k := key(i)
				read := *op == "get" || (*op == "mixed" && rng.Float64() < *readRatio)
				// Each request gets its own deadline: the end of the run
				// stops new requests but does not cut off those in flight.
				rctx, rcancel := context.WithTimeout(context.Background(), inv.timeout)
				t0 := time.Now()
				var err error
				switch {
				case *op == "txn":
					err = c.txn(rctx, k, key(partner[i]), value)
				case read:
					err = c.get(rctx, k)
				default:
					err = c.put(rctx, k, value)
				}
				took := time.Since(t0)
				rcancel()
				if err != nil {
					errs++
					last = err
					continue
				}
				mu.Lock()
				if hist.RecordValue(took.Microseconds()) != nil {
					_ = hist.RecordValue(hist.HighestTrackableValue())
				}
				mu.Unlock()
			}
			mu.Lock()
			defer mu.Unlock()
			res.Errors += errs
			if last != nil {
				res.LastError = last.Error()
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.ClientCPUMs = float64((processCPU() - cpuBefore).Microseconds()) / 1000
	stopProfile()
	res.OK = int(hist.TotalCount())
	res.OpsPerSec = float64(res.OK) / res.Seconds
	ms := func(us int64) float64 { return float64(us) / 1000 }
	res.P50Ms = ms(hist.ValueAtPercentile(50))
	res.P90Ms = ms(hist.ValueAtPercentile(90))
	res.P99Ms = ms(hist.ValueAtPercentile(99))
	res.P999Ms = ms(hist.ValueAtPercentile(99.9))
	res.MaxMs = ms(hist.Max())
	if inv.json() {
		_ = printJSON(stdout, res)
	} else {
		label := res.Op
		switch res.Op {
		case "mixed":
			label = fmt.Sprintf("mixed (%.0f%% gets)", 100*res.ReadRatio)
		case "txn":
			label = "txn (2 keys"
			if res.Target == benchRaftkv {
				label += " in 2 shards"
			}
			label += ")"
		}
		fmt.Fprintf(stdout, "%s %s: %d ok, %d errors in %.1fs with %d clients: %.0f ops/s; latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
			res.Target, label, res.OK, res.Errors, res.Seconds, res.Clients, res.OpsPerSec, res.P50Ms, res.P90Ms, res.P99Ms, res.P999Ms, res.MaxMs)
		if res.LastError != "" {
			fmt.Fprintf(stdout, "last error: %s\n", res.LastError)
		}
	}
	if res.OK == 0 {
		return 1
	}
	return 0
}

// startCPUProfile starts a Go CPU profile written to path; the returned
// function ends it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// processCPU is the user and system CPU this process has spent so far
// (zero where getrusage fails).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchShards asks the cluster for its shard count, which --op txn needs
// to pick key pairs that live in different shards.
func (inv *invocation) benchShards() (int, error) {
	opts := []client.Option{client.WithTimeout(inv.timeout), client.WithToken(inv.token)}
	if inv.tls != nil {
		opts = append(opts, client.WithTLS(inv.tls))
	}
	st, err := client.New(inv.endpointURLs(), opts...).Cluster(context.Background())
	switch {
	case err != nil:
		return 0, fmt.Errorf("reading the shard count: %w", err)
	case st.Shards < 2:
		return 0, fmt.Errorf("--op txn runs transactions across two shards, and the cluster has %d", st.Shards)
	}
	return st.Shards, nil
}

// benchPairs gives each key i a partner: the next key (wrapping around)
// in another shard of a cluster of shards shards, or simply the next key
// when shards is 0. Both sides of a transfer are fixed per key so that a
// run's transactions are the same for every target and client.
func benchPairs(keys int, key func(int) string, shards int) ([]int, error) {
	partner := make([]int, keys)
	if shards == 0 {
		for i := range partner {
			partner[i] = (i + 1) % keys
		}
		return partner, nil
	}
	shardOf := make([]string, keys)
	for i := range shardOf {
		shardOf[i] = keyspace.ShardFor(key(i), shards)
	}
	for i := range partner {
		partner[i] = -1
		for d := 1; d < keys; d++ {
			if j := (i + d) % keys; shardOf[j] != shardOf[i] {
				partner[i] = j
				break
			}
		}
		if partner[i] < 0 {
			return nil, fmt.Errorf("all %d keys live in %s: raise --keys for transactions across shards", keys, shardOf[i])
		}
	}
	return partner, nil
}

// flagGiven reports whether the command line or the environment set flag
// name.
func (c *command) flagGiven(name string) bool {
	given := false
	c.fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// benchConns returns one connection per worker, worker w on endpoint w
// modulo the number of endpoints. All share one HTTP client whose pool
// keeps a connection per worker, for either HTTP target: the benchmark
// measures the servers, not a client that closes connections it has no
// room to keep. The returned function releases what the connections hold.
func (inv *invocation) benchConns(target string, clients int, stale, leaderAware bool) ([]benchConn, func(), error) {
	eps := inv.endpointURLs()
	if target == benchEtcdGRPC {
		return newEtcdGRPCConns(eps, clients, stale, inv.timeout)
	}
	hc := benchHTTPClient(clients, inv.tls)
	conns := make([]benchConn, clients)
	switch target {
	case benchEtcd:
		for w := range conns {
			conns[w] = &etcdConn{hc: hc, base: eps[w%len(eps)], serializable: stale}
		}
	default:
		// Plain writes, sent once (no idempotency keys of the client's
		// own): what etcd is measured doing, and what a key-less client
		// costs the cluster.
		opts := []client.Option{client.WithHTTPClient(hc), client.WithTimeout(inv.timeout),
			client.WithUserAgent("raftkv-cli/" + version), client.WithToken(inv.token), client.WithIdempotentRetry(0)}
		if inv.tls != nil {
			opts = append(opts, client.WithTLS(inv.tls)) // for the https scheme of bare endpoints
		}
		if leaderAware {
			opts = append(opts, client.WithLeaderRouting())
		}
		base := client.New(eps, opts...)
		var readOpts []client.ReadOption
		if stale {
			readOpts = append(readOpts, client.Stale())
		}
		for w := range conns {
			c := base // one router for every worker
			if !leaderAware {
				c = base.At(eps[w%len(eps)]) // each worker stays on one node, as curl users do
			}
			conns[w] = raftkvConn{c: c, readOpts: readOpts}
		}
	}
	return conns, hc.CloseIdleConnections, nil
}

// benchHTTPClient is the client package's transport with room for one idle
// connection per worker and node. The room is per node: a leader-aware
// worker goes to whichever node leads its next key's shard, and with room
// for only one idle connection per worker in all, each change of node
// closed the connection to the last one and dialled anew (at one client,
// two requests in three paid a TCP handshake).
func benchHTTPClient(clients int, tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   client.DefaultDialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          0, // no limit over all nodes
		MaxIdleConnsPerHost:   clients,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		TLSClientConfig:       tlsConfig,
		ExpectContinueTimeout: time.Second,
	}}
}

// benchPreload writes every key once, a few workers at a time, so that gets
// find them.
func benchPreload(conns []benchConn, keys int, key func(int) string, value []byte, timeout time.Duration) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, c := range conns[:min(len(conns), 16)] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= keys {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := c.put(ctx, key(i), value)
				cancel()
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					next.Store(int64(keys)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// raftkvConn sends requests to one raftkv node.
type raftkvConn struct {
	c        *client.Client
	readOpts []client.ReadOption
}

func (r raftkvConn) put(ctx context.Context, key string, value []byte) error {
	_, err := r.c.Put(ctx, key, value)
	return err
}

func (r raftkvConn) get(ctx context.Context, key string) error {
	_, err := r.c.Get(ctx, key, r.readOpts...)
	return err
}

func (r raftkvConn) txn(ctx context.Context, a, b string, value []byte) error {
	res, err := r.c.Txn(ctx, client.Txn{
		Compare: []client.TxnCompare{client.CompareVersion(a, ">", 0)},
		Success: []client.TxnOp{client.PutOp(a, value), client.PutOp(b, value)},
	})
	if err == nil && !res.Succeeded {
		err = fmt.Errorf("txn: the compare on %q failed: the key is missing", a)
	}
	return err
}

func (r raftkvConn) deletePrefix(ctx context.Context, prefix string) (int64, error) {
	n, err := r.c.DeletePrefix(ctx, prefix)
	return int64(n), err
}

// etcdConn sends requests to one etcd member's JSON gateway, the gRPC API
// mapped onto HTTP/1.1 POSTs.
type etcdConn struct {
	hc           *http.Client
	base         string // "http://host:port"
	serializable bool
}

// etcdRequest is the body of /v3/kv/put and /v3/kv/range. Keys and values
// are protobuf bytes fields, which the gateway's JSON spells in base64.
type etcdRequest struct {
	Key          string `json:"key"`
	Value        string `json:"value,omitempty"`
	Serializable bool   `json:"serializable,omitempty"`
}

// etcdTxnRequest is the body of /v3/kv/txn: etcd's TxnRequest in the
// gateway's JSON (enums by name, int64 as a string, bytes in base64).
type etcdTxnRequest struct {
	Compare []etcdCompare   `json:"compare"`
	Success []etcdRequestOp `json:"success"`
}

type etcdCompare struct {
	Key     string `json:"key"`
	Target  string `json:"target"` // VERSION, CREATE, MOD, VALUE
	Result  string `json:"result"` // EQUAL, GREATER, LESS, NOT_EQUAL
	Version string `json:"version"`
}

type etcdRequestOp struct {
	RequestPut etcdRequest `json:"request_put"`
}

// etcdTxnResponse is the part of a /v3/kv/txn answer bench looks at; the
// gateway leaves out succeeded when it is false.
type etcdTxnResponse struct {
	Succeeded bool `json:"succeeded"`
}

// etcdRangeResponse is the part of a /v3/kv/range answer bench looks at.
type etcdRangeResponse struct {
	KVs []struct {
		Key string `json:"key"`
	} `json:"kvs"`
}

// etcdErrorBody is how the gateway reports a failed call.
type etcdErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Code    int    `json:"code"`
}

func (e *etcdConn) put(ctx context.Context, key string, value []byte) error {
	_, err := e.call(ctx, "/v3/kv/put", etcdRequest{
		Key:   base64.StdEncoding.EncodeToString([]byte(key)),
		Value: base64.StdEncoding.EncodeToString(value),
	})
	return err
}

// get fails on a key that is not there, as a raftkv get does (404).
func (e *etcdConn) get(ctx context.Context, key string) error {
	body, err := e.call(ctx, "/v3/kv/range", etcdRequest{
		Key:          base64.StdEncoding.EncodeToString([]byte(key)),
		Serializable: e.serializable,
	})
	if err != nil {
		return err
	}
	var rr etcdRangeResponse
	if err := json.Unmarshal(body, &rr); err != nil {
		return fmt.Errorf("etcd range: bad answer: %v", err)
	}
	if len(rr.KVs) == 0 {
		return fmt.Errorf("etcd range: key %q not found", key)
	}
	return nil
}

// txn is raftkvConn.txn in etcd's terms: if a's version > 0, put both.
func (e *etcdConn) txn(ctx context.Context, a, b string, value []byte) error {
	b64 := func(s []byte) string { return base64.StdEncoding.EncodeToString(s) }
	v := b64(value)
	body, err := e.call(ctx, "/v3/kv/txn", etcdTxnRequest{
		Compare: []etcdCompare{{Key: b64([]byte(a)), Target: "VERSION", Result: "GREATER", Version: "0"}},
		Success: []etcdRequestOp{
			{RequestPut: etcdRequest{Key: b64([]byte(a)), Value: v}},
			{RequestPut: etcdRequest{Key: b64([]byte(b)), Value: v}},
		},
	})
	if err != nil {
		return err
	}
	var tr etcdTxnResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return fmt.Errorf("etcd txn: bad answer: %v", err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("etcd txn: the compare on %q failed: the key is missing", a)
	}
	return nil
}

// prefixEnd is the range end that makes an etcd range cover every key
// with prefix: the prefix with its last byte incremented (carrying).
func prefixEnd(prefix string) []byte {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0} // every key
}

func (e *etcdConn) deletePrefix(ctx context.Context, prefix string) (int64, error) {
	body, err := e.call(ctx, "/v3/kv/deleterange", etcdDeleteRange{Key: base64.StdEncoding.EncodeToString([]byte(prefix)), RangeEnd: base64.StdEncoding.EncodeToString(prefixEnd(prefix))})
	if err != nil {
		return 0, err
	}
	var dr struct {
		Deleted string `json:"deleted"`
	}
	if err := json.Unmarshal(body, &dr); err != nil {
		return 0, fmt.Errorf("etcd deleterange: bad answer: %v", err)
	}
	if dr.Deleted == "" {
		return 0, nil
	}
	return strconv.ParseInt(dr.Deleted, 10, 64)
}

// etcdDeleteRange is the body of /v3/kv/deleterange.
type etcdDeleteRange struct {
	Key      string `json:"key"`
	RangeEnd string `json:"range_end"`
}

// call POSTs req to path and returns the body of a 200 answer; any other
// status is an error carrying etcd's message.
func (e *etcdConn) call(ctx context.Context, path string, req any) ([]byte, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+path, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := e.hc.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var eb etcdErrorBody
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &eb) == nil && cmp.Or(eb.Message, eb.Error) != "" {
			msg = cmp.Or(eb.Message, eb.Error)
		}
		return nil, fmt.Errorf("etcd %s: HTTP %d: %s", path, resp.StatusCode, msg)
	}
	return body, nil
}
