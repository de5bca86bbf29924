package httpapi

import (
	"fmt"
	"sync"
	"time"

	gometrics "github.com/armon/go-metrics"
	gometricsprom "github.com/armon/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// hashicorp/raft reports its own timings and counters (commit time,
// append-entries RPCs, FSM apply, snapshotting, leader contact…) through
// go-metrics' process-wide sink, which by default discards them.
// WithRaftMetrics points that sink at go-metrics' Prometheus sink, once per
// process, and exports it next to raftkv's own metrics, under raft's own
// names with dots made underscores (raft_commitTime,
// raft_replication_appendEntries_rpc{peer_id}, raft_leader_lastContact…).
// They are not per group: every group of the process adds to the same
// series, so read them for the node as a whole; raftkv's raftkv_raft_*
// metrics are the per-group ones.
var (
	raftSinkOnce sync.Once
	raftSink     *gometricsprom.PrometheusSink
	raftSinkErr  error
)

// raftMetricsExpiry is how long a raft series that stops being reported
// (a removed peer's) stays in the output.
const raftMetricsExpiry = 5 * time.Minute

func raftMetricsSink() (*gometricsprom.PrometheusSink, error) {
	raftSinkOnce.Do(func() {
		// The sink registers itself with this registry; each Server then
		// registers it with its own, so it is registered in none globally.
		raftSink, raftSinkErr = gometricsprom.NewPrometheusSinkFrom(gometricsprom.PrometheusOpts{
			Registerer: prometheus.NewRegistry(),
			Expiration: raftMetricsExpiry,
			Name:       "raftkv_raft_library",
		})
		if raftSinkErr != nil {
			return
		}
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname = false
		cfg.EnableHostnameLabel = false
		cfg.EnableRuntimeMetrics = false // the Go collector covers the runtime
		cfg.EnableServiceLabel = false
		_, raftSinkErr = gometrics.NewGlobal(cfg, raftSink)
	})
	return raftSink, raftSinkErr
}

// WithRaftMetrics returns the option that exports hashicorp/raft's own
// metrics on /metrics. It is for the one node a process runs: in a process
// with several nodes (tests) their raft metrics would be mixed.
func WithRaftMetrics() (Option, error) {
	sink, err := raftMetricsSink()
	if err != nil {
		return nil, fmt.Errorf("exporting raft's metrics: %w", err)
	}
	return func(s *Server) { s.raftSink = sink }, nil
}
