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

// hotRaftSink passes raft's metrics on to the Prometheus sink but for its
// per-RPC, per-apply and per-message timings (raft.rpc.*, raft.fsm.*,
// raft.net.*), keeping raft.rpc.installSnapshot.*.
type hotRaftSink struct{ gometrics.MetricSink }

func isHotRaftMetric(key []string) bool {
	if len(key) < 2 || key[0] != "raft" {
		return false
	}
	switch key[1] {
	case "fsm", "net":
		return true
	case "rpc":
		return len(key) < 3 || key[2] != "installSnapshot"
	}
	return false
}

func (s hotRaftSink) SetGauge(key []string, val float32) {
	if !isHotRaftMetric(key) {
		s.MetricSink.SetGauge(key, val)
	}
}

func (s hotRaftSink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	if !isHotRaftMetric(key) {
		s.MetricSink.SetGaugeWithLabels(key, val, labels)
	}
}

func (s hotRaftSink) EmitKey(key []string, val float32) {
	if !isHotRaftMetric(key) {
		s.MetricSink.EmitKey(key, val)
	}
}

func (s hotRaftSink) IncrCounter(key []string, val float32) {
	if !isHotRaftMetric(key) {
		s.MetricSink.IncrCounter(key, val)
	}
}

func (s hotRaftSink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	if !isHotRaftMetric(key) {
		s.MetricSink.IncrCounterWithLabels(key, val, labels)
	}
}

func (s hotRaftSink) AddSample(key []string, val float32) {
	if !isHotRaftMetric(key) {
		s.MetricSink.AddSample(key, val)
	}
}

func (s hotRaftSink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	if !isHotRaftMetric(key) {
		s.MetricSink.AddSampleWithLabels(key, val, labels)
	}
}

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
		// Timings raft takes on every RPC a follower handles, every apply
		// batch and every message its network transport decodes cost about
		// 4 % of a node's CPU under load (each sample goes into a
		// Prometheus summary under a lock), and raftkv's own metrics cover
		// what they would say: raftkv_apply_duration_seconds,
		// raftkv_log_sync_duration_seconds, and raft's leader-side
		// raft_replication_appendEntries_rpc and raft_commitTime, which
		// stay. Snapshot installs are rare and stay too.
		//
		// They are left out by hotRaftSink rather than by go-metrics'
		// prefix filters, which join every key into a string and look it
		// up in a radix tree on every call, 3 % of a node's CPU under load.
		_, raftSinkErr = gometrics.NewGlobal(cfg, hotRaftSink{raftSink})
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
