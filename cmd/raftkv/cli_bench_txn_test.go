package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/raftkv/raftkv/internal/keyspace"
	"github.com/raftkv/raftkv/raftkvtest"
)

// txnsServed sums raftkv_txn_total by mode and outcome over the nodes'
// /metrics (each counts the transactions it coordinated).
func txnsServed(t *testing.T, c *raftkvtest.Cluster) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, n := range c.Nodes {
		resp, err := http.Get("http://" + n.HTTPAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "raftkv_txn_total{") {
				continue
			}
			labels, value, _ := strings.Cut(strings.TrimPrefix(line, "raftkv_txn_total"), " ")
			v, _ := strconv.ParseFloat(value, 64)
			out[labels] += v
		}
		resp.Body.Close()
	}
	return out
}

func TestBenchTxnRunsCrossShardTransfersSpreadAndLeaderAware(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	var eps []string
	for _, n := range c.Nodes {
		eps = append(eps, n.HTTPAddr)
	}
	endpoints := strings.Join(eps, ",")
	total := 0
	for _, extra := range [][]string{nil, {"--leader-aware"}} {
		args := append([]string{"--endpoints", endpoints, "--op", "txn", "--clients", "2", "--duration", "300ms", "--keys", "40"}, extra...)
		res := runBench(t, args...)
		if res.Op != "txn" || res.OK == 0 || res.Errors != 0 {
			t.Fatalf("bench %v: %+v", extra, res)
		}
		total += res.OK
	}
	served := txnsServed(t, c)
	if got := served[`{mode="2pc",outcome="succeeded"}`]; int(got) != total {
		t.Errorf("nodes coordinated %v cross-shard transactions that succeeded, bench counted %d (all: %v)", got, total, served)
	}
	for labels := range served {
		if !strings.Contains(labels, `mode="2pc"`) {
			t.Errorf("a transaction that was not cross-shard: %s (all: %v)", labels, served)
		}
	}
}

func TestBenchPairsAreInDifferentShards(t *testing.T) {
	key := func(i int) string { return fmt.Sprintf("bench/%08d", i) }
	for _, shards := range []int{2, 4, 7} {
		partner, err := benchPairs(500, key, shards)
		if err != nil {
			t.Fatal(err)
		}
		for i, j := range partner {
			if keyspace.ShardFor(key(i), shards) == keyspace.ShardFor(key(j), shards) {
				t.Fatalf("%d shards: %s and %s share a shard", shards, key(i), key(j))
			}
		}
	}
	if _, err := benchPairs(1, key, 2); err == nil || !strings.Contains(err.Error(), "raise --keys") {
		t.Fatalf("one key, two shards: %v", err)
	}
	partner, _ := benchPairs(3, key, 0)
	if fmt.Sprint(partner) != "[1 2 0]" {
		t.Fatalf("etcd pairs %v", partner)
	}
}

func TestBenchTxnRefusesAClusterOfOneShard(t *testing.T) {
	f, srv := newFakeNode(t, "node1")
	f.cluster = `{"cluster_id":"c","shards":1,"nodes":[],"groups":[]}`
	code, out, errOut := runCLI(t, "bench", "--endpoints", srv.URL, "--op", "txn", "--duration", "100ms")
	if code != 1 || out != "" || !strings.Contains(errOut, "across two shards, and the cluster has 1") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// etcdTxnBody is a /v3/kv/txn body as etcd's gateway decodes it.
type etcdTxnBody struct {
	Compare []struct {
		Key     []byte `json:"key"`
		Target  string `json:"target"`
		Result  string `json:"result"`
		Version string `json:"version"`
	} `json:"compare"`
	Success []struct {
		RequestPut *etcdKV `json:"request_put"`
	} `json:"success"`
}

func TestBenchEtcdTxnIsACompareAndTwoPuts(t *testing.T) {
	var mu sync.Mutex
	data := map[string]bool{}
	forget := "" // a key whose puts are not kept
	txns, puts := 0, 0
	var malformed []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/v3/kv/put":
			var kv etcdKV
			_ = json.NewDecoder(r.Body).Decode(&kv)
			data[string(kv.Key)] = string(kv.Key) != forget
			puts++
			fmt.Fprint(w, `{"header":{}}`)
		case "/v3/kv/txn":
			var b etcdTxnBody
			if err := json.NewDecoder(r.Body).Decode(&b); err != nil || len(b.Compare) != 1 || len(b.Success) != 2 {
				malformed = append(malformed, fmt.Sprintf("%v %+v", err, b))
				w.WriteHeader(400)
				return
			}
			cmp := b.Compare[0]
			p1, p2 := b.Success[0].RequestPut, b.Success[1].RequestPut
			if cmp.Target != "VERSION" || cmp.Result != "GREATER" || cmp.Version != "0" || p1 == nil || p2 == nil ||
				string(p1.Key) != string(cmp.Key) || string(p1.Key) == string(p2.Key) || len(p1.Value) != 10 || len(p2.Value) != 10 {
				malformed = append(malformed, fmt.Sprintf("%+v", b))
				w.WriteHeader(400)
				return
			}
			txns++
			if data[string(cmp.Key)] {
				fmt.Fprint(w, `{"header":{},"succeeded":true,"responses":[{"response_put":{}},{"response_put":{}}]}`)
			} else {
				fmt.Fprint(w, `{"header":{}}`) // succeeded false is left out
			}
		default:
			malformed = append(malformed, r.URL.Path)
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	res := runBench(t, "--target", "etcd", "--endpoints", srv.URL, "--op", "txn", "--cleanup=false", "--clients", "2", "--duration", "200ms", "--keys", "30", "--value-size", "10")
	mu.Lock()
	defer mu.Unlock()
	if len(malformed) > 0 {
		t.Fatalf("malformed: %q", malformed)
	}
	if puts != 30 || res.OK == 0 || res.OK != txns || res.Errors != 0 {
		t.Fatalf("preload %d puts; report %+v; fake answered %d txns", puts, res, txns)
	}
	// A compare that fails (the fake dropped the preload of that key) is
	// an error: the load would not be the one asked for.
	forget = "bench/00000003"
	mu.Unlock()
	res = runBench(t, "--target", "etcd", "--endpoints", srv.URL, "--op", "txn", "--cleanup=false", "--clients", "2", "--duration", "200ms", "--keys", "30", "--value-size", "10")
	mu.Lock()
	if res.Errors == 0 || !strings.Contains(res.LastError, `compare on "bench/00000003" failed`) {
		t.Fatalf("with a missing key: %+v", res)
	}
}
