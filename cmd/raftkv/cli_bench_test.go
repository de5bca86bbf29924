package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeEtcd answers the two calls of etcd's v3 JSON gateway that bench
// makes, from an in-memory map. Like etcd, it decodes the body into []byte
// fields, so a key or value that is not base64 is a 400. Every request for
// a key ending in failSuffix gets the 503 etcd sends when a proposal times
// out. It records what it served for the test to compare with the report.
type fakeEtcd struct {
	t          *testing.T
	valueSize  int
	failSuffix string
	forget     string // a key whose puts succeed but are not kept

	mu           sync.Mutex
	data         map[string][]byte
	puts, ranges int // answered 200
	deleted      int // keys deleterange removed
	failed       int // answered 503
	serializable int // ranges that asked for it
	malformed    []string
}

func newFakeEtcd(t *testing.T, valueSize int) (*fakeEtcd, *httptest.Server) {
	f := &fakeEtcd{t: t, valueSize: valueSize, data: map[string][]byte{}}
	srv := httptest.NewServer(f) // 127.0.0.1
	t.Cleanup(srv.Close)
	return f, srv
}

// etcdKV is a request body as etcd's gateway decodes it.
type etcdKV struct {
	Key          []byte `json:"key"`
	Value        []byte `json:"value"`
	RangeEnd     []byte `json:"range_end"`
	Serializable bool   `json:"serializable"`
}

func (f *fakeEtcd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A few hundred microseconds to a few milliseconds, so the latencies
	// spread over many histogram buckets.
	time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
	var req etcdKV
	err := json.NewDecoder(r.Body).Decode(&req)
	f.mu.Lock()
	defer f.mu.Unlock()
	bad := func(why string) {
		f.malformed = append(f.malformed, fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, why))
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":%q,"message":%q,"code":3}`, why, why)
	}
	switch {
	case r.Method != http.MethodPost:
		bad("method " + r.Method)
		return
	case r.Header.Get("Content-Type") != "application/json":
		bad("content type " + r.Header.Get("Content-Type"))
		return
	case err != nil:
		bad(err.Error())
		return
	case !strings.HasPrefix(string(req.Key), "bench/"):
		bad(fmt.Sprintf("key %q", req.Key))
		return
	}
	if f.failSuffix != "" && strings.HasSuffix(string(req.Key), f.failSuffix) {
		f.failed++
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}`)
		return
	}
	switch r.URL.Path {
	case "/v3/kv/put":
		if len(req.Value) != f.valueSize {
			bad(fmt.Sprintf("value of %d bytes", len(req.Value)))
			return
		}
		if string(req.Key) != f.forget {
			f.data[string(req.Key)] = req.Value
		}
		f.puts++
		fmt.Fprint(w, `{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"4"}}`)
	case "/v3/kv/range":
		f.ranges++
		if req.Serializable {
			f.serializable++
		}
		v, ok := f.data[string(req.Key)]
		if !ok {
			fmt.Fprint(w, `{"header":{"revision":"3"}}`)
			return
		}
		out, _ := json.Marshal(map[string]any{
			"header": map[string]string{"revision": "3"},
			"kvs":    []map[string]any{{"key": req.Key, "value": v, "version": "1"}},
			"count":  "1",
		})
		w.Write(out)
	case "/v3/kv/deleterange":
		n := 0
		for k := range f.data {
			if k >= string(req.Key) && k < string(req.RangeEnd) {
				delete(f.data, k)
				n++
			}
		}
		f.deleted += n
		fmt.Fprintf(w, `{"header":{"revision":"4"},"deleted":"%d"}`, n)
	default:
		bad("path " + r.URL.Path)
	}
}

// runBench runs bench with -o json and decodes the report.
func runBench(t *testing.T, args ...string) benchResult {
	t.Helper()
	code, out, errOut := runCLI(t, append([]string{"bench", "-o", "json"}, args...)...)
	var res benchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 {
		t.Fatalf("bench %v: code %d, stdout %q, stderr %q", args, code, out, errOut)
	}
	checkPercentilesOrdered(t, res)
	return res
}

func checkPercentilesOrdered(t *testing.T, res benchResult) {
	t.Helper()
	ps := []float64{res.P50Ms, res.P90Ms, res.P99Ms, res.P999Ms, res.MaxMs}
	for i := 1; i < len(ps); i++ {
		if ps[i] < ps[i-1] {
			t.Errorf("percentiles out of order: p50 %v, p90 %v, p99 %v, p99.9 %v, max %v", ps[0], ps[1], ps[2], ps[3], ps[4])
		}
	}
	if res.OK > 0 && res.P50Ms <= 0 {
		t.Errorf("p50 %v ms over %d requests", res.P50Ms, res.OK)
	}
}

func TestBenchEtcdWritesAreWellFormedAndCounted(t *testing.T) {
	f, srv := newFakeEtcd(t, 37)
	res := runBench(t, "--target", "etcd", "--endpoints", srv.URL,
		"--clients", "4", "--duration", "300ms", "--value-size", "37", "--keys", "100")

	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.malformed) > 0 {
		t.Fatalf("malformed requests: %q", f.malformed)
	}
	if res.Target != "etcd" || res.Op != "put" || res.Clients != 4 {
		t.Errorf("report names %s %s with %d clients", res.Target, res.Op, res.Clients)
	}
	if res.OK == 0 || res.OK != f.puts || res.Errors != 0 || f.ranges != 0 {
		t.Errorf("report: %d ok, %d errors; fake etcd answered %d puts, %d ranges", res.OK, res.Errors, f.puts, f.ranges)
	}
	if res.MaxMs < 0.5 {
		t.Errorf("max %v ms, though the fake takes up to 3 ms", res.MaxMs)
	}
}

func TestBenchEtcdStaleGetsAreSerializable(t *testing.T) {
	f, srv := newFakeEtcd(t, 100)
	res := runBench(t, "--target", "etcd", "--endpoints", srv.URL+","+srv.URL,
		"--op", "get", "--stale", "--clients", "3", "--duration", "300ms", "--keys", "20")

	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.malformed) > 0 {
		t.Fatalf("malformed requests: %q", f.malformed)
	}
	if f.puts != 20 {
		t.Errorf("preload wrote %d keys, want 20", f.puts)
	}
	if res.OK == 0 || res.OK != f.ranges || res.Errors != 0 || f.serializable != f.ranges {
		t.Errorf("report: %d ok, %d errors; fake etcd answered %d ranges, %d serializable", res.OK, res.Errors, f.ranges, f.serializable)
	}
}

func TestBenchEtcdFailuresCountAsErrors(t *testing.T) {
	f, srv := newFakeEtcd(t, 100)
	f.failSuffix = "7" // one key in ten
	res := runBench(t, "--target", "etcd", "--endpoints", srv.URL,
		"--clients", "4", "--duration", "300ms", "--keys", "1000")

	f.mu.Lock()
	defer f.mu.Unlock()
	if res.Errors == 0 || res.Errors != f.failed || res.OK != f.puts {
		t.Errorf("report: %d ok, %d errors; fake etcd answered %d puts, failed %d", res.OK, res.Errors, f.puts, f.failed)
	}
	if !strings.Contains(res.LastError, "HTTP 503: etcdserver: request timed out") {
		t.Errorf("last error %q", res.LastError)
	}
}

func TestBenchEtcdPreloadFailureStopsBench(t *testing.T) {
	f, srv := newFakeEtcd(t, 100)
	f.failSuffix = "3"
	code, out, errOut := runCLI(t, "bench", "--target", "etcd", "--endpoints", srv.URL, "--op", "get", "--keys", "10", "--duration", "100ms")
	if code != 1 || out != "" || !strings.Contains(errOut, "preloading keys: etcd /v3/kv/put: HTTP 503") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestBenchEtcdMissingKeyIsAnError(t *testing.T) {
	// etcd answers a range of a missing key with 200 and no kvs; bench
	// counts it as an error, as it does raftkv's 404.
	f, srv := newFakeEtcd(t, 100)
	f.forget = "bench/00000003"
	res := runBench(t, "--target", "etcd", "--endpoints", srv.URL, "--op", "get", "--keys", "10", "--clients", "2", "--duration", "200ms")
	if res.Errors == 0 || res.OK == 0 || !strings.Contains(res.LastError, `key "bench/00000003" not found`) {
		t.Errorf("%d ok, %d errors, last error %q", res.OK, res.Errors, res.LastError)
	}
}

func TestBenchMixedFollowsReadRatio(t *testing.T) {
	f := &fakeNode{id: "node1", data: map[string][]byte{}, revs: map[string]uint64{}}
	var mu sync.Mutex
	gets, puts := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		switch r.Method {
		case http.MethodGet:
			gets++
		case http.MethodPut:
			puts++
		}
		mu.Unlock()
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()

	res := runBench(t, "--endpoints", srv.URL, "--op", "mixed", "--read-ratio", "0.9",
		"--clients", "4", "--duration", "300ms", "--keys", "50")
	mu.Lock()
	defer mu.Unlock()
	puts -= 50 // the preload
	if res.Target != "raftkv" || res.ReadRatio != 0.9 || res.OK != gets+puts || res.Errors != 0 {
		t.Fatalf("report %+v; fake answered %d gets, %d puts after the preload", res, gets, puts)
	}
	if share := float64(gets) / float64(gets+puts); res.OK < 200 || share < 0.8 || share > 0.97 {
		t.Errorf("%d gets of %d requests (%.2f), want about 0.9", gets, gets+puts, share)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--target", "consul"},
		{"bench", "--op", "mixed", "--read-ratio", "1.5"},
		{"bench", "--read-ratio", "-0.1"},
		{"bench", "--op", "scan"},
		{"bench", "--op", "txn", "--keys", "1"},
		{"bench", "--leader-aware", "--no-leader-routing"},
	} {
		if code, out, errOut := runCLI(t, args...); code != 2 || out != "" || !strings.Contains(errOut, "Error:") {
			t.Errorf("%v: code %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

func TestBenchTextReportHasEveryPercentile(t *testing.T) {
	_, srv := newFakeEtcd(t, 100)
	code, out, errOut := runCLI(t, "bench", "--target", "etcd", "--endpoints", srv.URL, "--clients", "2", "--duration", "100ms")
	if code != 0 || !strings.HasPrefix(out, "etcd put: ") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, p := range []string{"p50 ", "p90 ", "p99 ", "p99.9 ", "max "} {
		if !strings.Contains(out, p) {
			t.Errorf("no %q in %q", p, out)
		}
	}
}

// A leader-aware worker moves between nodes from one request to the next:
// it must keep its connection to each, not dial anew at every move.
func TestABenchWorkerKeepsAConnectionToEveryNode(t *testing.T) {
	var servers []*httptest.Server
	dials := make([]atomic.Int32, 3)
	for i := range dials {
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				dials[i].Add(1)
			}
		}
		s.Start()
		t.Cleanup(s.Close)
		servers = append(servers, s)
	}
	hc := benchHTTPClient(1, nil)
	defer hc.CloseIdleConnections()
	for i := range 30 {
		resp, err := hc.Get(servers[i%len(servers)].URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for i := range dials {
		if n := dials[i].Load(); n != 1 {
			t.Errorf("node %d was dialled %d times for 10 requests, want once", i, n)
		}
	}
}
