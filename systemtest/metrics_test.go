package systemtest

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// scrape reads a node's /metrics into series name{labels} → value.
func scrape(t *testing.T, n *Node) map[string]float64 {
	t.Helper()
	r := mustDo(t, n, http.MethodGet, "/metrics", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetricsCoverRaftTheLogWritesAndCheckpoints checks the series an
// operator alerts on: raft's own metrics, the log's fsync latency, each
// group's write latency and its checkpoints.
func TestMetricsCoverRaftTheLogWritesAndCheckpoints(t *testing.T) {
	skipShort(t)
	c := StartClusterWith(t, Config{Nodes: 1, Shards: 2})
	n := c.Nodes[0]
	const writes = 6
	for i := range writes {
		if r := mustDo(t, n, http.MethodPut, KeyPath(fmt.Sprintf("metrics/%d", i)), []byte("v")); r.Status != http.StatusOK {
			t.Fatalf("write %d: %s", i, r)
		}
	}
	if r := mustDo(t, n, http.MethodPost, "/v1/cluster/snapshot", nil); r.Status != http.StatusOK {
		t.Fatalf("checkpoint: %s", r)
	}
	m := scrape(t, n)

	want := func(series string, atLeast float64) {
		t.Helper()
		if v, ok := m[series]; !ok || v < atLeast {
			t.Errorf("%s = %v (present %v), want at least %v", series, v, ok, atLeast)
		}
	}
	// hashicorp/raft's own, through go-metrics.
	want("raft_commitTime_count", writes)
	want("raft_apply", writes)
	// Its per-RPC and per-apply timings are left out: they cost CPU on
	// every write and raftkv's own series cover them.
	for series := range m {
		if strings.HasPrefix(series, "raft_fsm_") || strings.HasPrefix(series, "raft_rpc_") || strings.HasPrefix(series, "raft_net_") {
			t.Errorf("%s is exported; raft's hot timings should be left out", series)
		}
	}
	// Every write was fsynced by the log's committer.
	want("raftkv_log_sync_duration_seconds_count", writes)
	want(`raftkv_log_sync_duration_seconds_bucket{le="+Inf"}`, writes)
	// Each group's writes, proposal to applied, and its checkpoint.
	applied := m[`raftkv_apply_duration_seconds_count{group="shard-1"}`] + m[`raftkv_apply_duration_seconds_count{group="shard-2"}`]
	if applied < writes {
		t.Errorf("the shards count %v applied writes, want at least %d", applied, writes)
	}
	for _, g := range []string{"meta", "shard-1", "shard-2"} {
		if v := m[fmt.Sprintf(`raftkv_checkpoint_duration_seconds_count{group=%q}`, g)]; v != 1 {
			t.Errorf("%s: %v checkpoints counted for one taken", g, v)
		}
		want(fmt.Sprintf(`raftkv_checkpoint_bytes{group=%q}`, g), 1)
		if v := m[fmt.Sprintf(`raftkv_checkpoint_failures_total{group=%q}`, g)]; v != 0 {
			t.Errorf("%s: %v failed checkpoints", g, v)
		}
	}
}
