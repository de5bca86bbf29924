package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/internal/histo"
)

// metrics holds this node's Prometheus registry. Each Server has its own
// registry (not the global one) so several nodes can live in one test
// process.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	txns     *prometheus.CounterVec
	rejected *prometheus.CounterVec
}

func newMetrics(svc Service) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_http_requests_total",
			Help: "HTTP requests served, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftkv_http_request_duration_seconds",
			Help:    "HTTP request latency, by route and method.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}, []string{"route", "method"}),
	}
	m.txns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "raftkv_txn_total",
		Help: "Transactions coordinated by this node, by mode (single, 2pc) and outcome (succeeded, failed_compare, or the error code).",
	}, []string{"mode", "outcome"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "raftkv_http_rejected_total",
		Help: "Requests refused by a limit before anything was done, by reason (max_concurrent_requests, body_too_large, max_concurrent_backups, max_waiters, max_watch_streams).",
	}, []string{"reason"})
	for _, reason := range []string{rejectConcurrency, rejectBody, rejectBackups, rejectWaiters, rejectWatches} {
		m.rejected.WithLabelValues(reason)
	}
	m.reg.MustRegister(m.requests, m.latency, m.txns, m.rejected, &raftCollector{svc: svc},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method).Observe(d.Seconds())
}

// observeTxn counts one transaction's outcome.
func (m *metrics) observeTxn(mode string, succeeded bool, err error) {
	outcome := "succeeded"
	switch {
	case err != nil:
		outcome, _ = errorStatus(err)
	case !succeeded:
		outcome = "failed_compare"
	}
	if mode == "" {
		mode = "unknown"
	}
	m.txns.WithLabelValues(mode, outcome).Inc()
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// raftCollector turns each group's raft state into gauges at scrape time.
type raftCollector struct{ svc Service }

var (
	groupLabels    = []string{"group"}
	descTerm       = prometheus.NewDesc("raftkv_raft_term", "Current raft term.", groupLabels, nil)
	descCommit     = prometheus.NewDesc("raftkv_raft_commit_index", "Raft commit index.", groupLabels, nil)
	descApplied    = prometheus.NewDesc("raftkv_raft_applied_index", "Index of the last entry applied to the state machine.", groupLabels, nil)
	descLastLog    = prometheus.NewDesc("raftkv_raft_last_log_index", "Index of the last entry in the local log.", groupLabels, nil)
	descSnapshot   = prometheus.NewDesc("raftkv_raft_last_snapshot_index", "Index covered by the newest checkpoint.", groupLabels, nil)
	descLeader     = prometheus.NewDesc("raftkv_raft_is_leader", "1 if this node leads the group.", groupLabels, nil)
	descHasLeader  = prometheus.NewDesc("raftkv_raft_has_leader", "1 if this node knows a leader for the group.", groupLabels, nil)
	descVoters     = prometheus.NewDesc("raftkv_raft_voters", "Voters in the group's configuration.", groupLabels, nil)
	descChanges    = prometheus.NewDesc("raftkv_raft_leader_changes_total", "Leader changes observed by this node.", groupLabels, nil)
	descElections  = prometheus.NewDesc("raftkv_raft_elections_total", "Elections this node started, by cause (heartbeat_timeout, leader_gone, transfer).", []string{"group", "cause"}, nil)
	descStepDowns  = prometheus.NewDesc("raftkv_raft_step_downs_total", "Leaderships this node lost, by cause (lost_quorum, transfer, shutdown).", []string{"group", "cause"}, nil)
	descRefused    = prometheus.NewDesc("raftkv_raft_connections_refused_total", "Raft connections this node refused after their hello (another cluster, node or incarnation: a wiped data dir).", groupLabels, nil)
	descContactAge = prometheus.NewDesc("raftkv_raft_last_contact_seconds", "Seconds since a follower last heard from its leader (0 on the leader).", groupLabels, nil)
	descApply      = prometheus.NewDesc("raftkv_apply_duration_seconds", "Writes this node proposed as the group's leader, from proposal to committed and applied.", groupLabels, nil)
	descCheckpoint = prometheus.NewDesc("raftkv_checkpoint_duration_seconds", "Checkpoints (raft snapshots) this node wrote for the group, from start to durable.", groupLabels, nil)
	descCkptBytes  = prometheus.NewDesc("raftkv_checkpoint_bytes", "Size of the newest checkpoint this node wrote for the group (0 if none since start).", groupLabels, nil)
	descCkptFailed = prometheus.NewDesc("raftkv_checkpoint_failures_total", "Checkpoints of the group that failed or were cancelled on this node.", groupLabels, nil)

	descLogWrites   = prometheus.NewDesc("raftkv_log_writes_total", "Writes to the node's write-ahead log, each one fdatasync.", nil, nil)
	descLogRequests = prometheus.NewDesc("raftkv_log_requests_total", "Appends, deletions and stable values the log's writes carried (over writes: what group commit saves).", nil, nil)
	descLogSync     = prometheus.NewDesc("raftkv_log_sync_seconds_total", "Time spent waiting for the log's fdatasync.", nil, nil)
	descLogSyncTime = prometheus.NewDesc("raftkv_log_sync_duration_seconds", "Each fdatasync of the write-ahead log's committer (one per group commit).", nil, nil)
	descLogSegments = prometheus.NewDesc("raftkv_log_segments", "Segment files of the node's write-ahead log.", nil, nil)

	descDeadRemoved     = prometheus.NewDesc("raftkv_dead_nodes_removed_total", "Nodes this node removed from the cluster as dead (--dead-node-timeout) while it led the meta group.", nil, nil)
	descForwardCalls    = prometheus.NewDesc("raftkv_forward_batches_total", "Batch calls that carried this node's forwarded key requests to leaders.", nil, nil)
	descForwardRequests = prometheus.NewDesc("raftkv_forward_requests_total", "Forwarded key requests (over batches: how many shared a call).", nil, nil)

	descLaneAppends   = prometheus.NewDesc("raftkv_lane_appends_total", "Raft appends this node sent to peers on its append lanes, every group's on one connection per peer.", nil, nil)
	descLaneFallbacks = prometheus.NewDesc("raftkv_lane_fallbacks_total", "Raft appends with entries that took their group's own connection (no lane up to the peer yet, or a batch above the lane's size limit).", nil, nil)
	descLaneFrames    = prometheus.NewDesc("raftkv_lane_frames_total", "Frames (appends and their replies) this node wrote on its lane connections.", nil, nil)
	descLaneWrites    = prometheus.NewDesc("raftkv_lane_writes_total", "Writes those frames took (frames over writes: how many shared one).", nil, nil)
)

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTerm, descCommit, descApplied, descLastLog, descSnapshot, descLeader, descHasLeader, descVoters, descChanges, descElections, descStepDowns, descRefused, descContactAge, descApply,
		descCheckpoint, descCkptBytes, descCkptFailed,
		descLogWrites, descLogRequests, descLogSync, descLogSyncTime, descLogSegments, descForwardCalls, descForwardRequests, descDeadRemoved,
		descLaneAppends, descLaneFallbacks, descLaneFrames, descLaneWrites} {
		ch <- d
	}
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.svc.Status()
	ch <- prometheus.MustNewConstMetric(descLogWrites, prometheus.CounterValue, float64(st.Log.Writes))
	ch <- prometheus.MustNewConstMetric(descLogRequests, prometheus.CounterValue, float64(st.Log.Requests))
	ch <- prometheus.MustNewConstMetric(descLogSync, prometheus.CounterValue, st.Log.SyncSeconds)
	ch <- prometheus.MustNewConstMetric(descLogSegments, prometheus.GaugeValue, float64(st.Log.Segments))
	ch <- constHistogram(descLogSyncTime, st.Log.SyncLatency)
	ch <- prometheus.MustNewConstMetric(descForwardCalls, prometheus.CounterValue, float64(st.Forwarded.Calls))
	ch <- prometheus.MustNewConstMetric(descForwardRequests, prometheus.CounterValue, float64(st.Forwarded.Requests))
	ch <- prometheus.MustNewConstMetric(descDeadRemoved, prometheus.CounterValue, float64(st.DeadNodesRemoved))
	ch <- prometheus.MustNewConstMetric(descLaneAppends, prometheus.CounterValue, float64(st.Lane.Appends))
	ch <- prometheus.MustNewConstMetric(descLaneFallbacks, prometheus.CounterValue, float64(st.Lane.Fallbacks))
	ch <- prometheus.MustNewConstMetric(descLaneFrames, prometheus.CounterValue, float64(st.Lane.Frames))
	ch <- prometheus.MustNewConstMetric(descLaneWrites, prometheus.CounterValue, float64(st.Lane.Writes))
	for _, g := range st.Groups {
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, g.Name)
		}
		gauge(descTerm, float64(g.Term))
		gauge(descCommit, float64(g.CommitIndex))
		gauge(descApplied, float64(g.AppliedIndex))
		gauge(descLastLog, float64(g.LastLogIndex))
		gauge(descSnapshot, float64(g.LastSnapshotIndex))
		gauge(descLeader, boolFloat(g.Leader == st.Node))
		gauge(descHasLeader, boolFloat(g.Leader != ""))
		gauge(descVoters, float64(len(g.Voters)))
		ch <- prometheus.MustNewConstMetric(descChanges, prometheus.CounterValue, float64(g.LeaderChanges), g.Name)
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(g.RefusedConnections), g.Name)
		for cause, v := range g.Candidacies {
			ch <- prometheus.MustNewConstMetric(descElections, prometheus.CounterValue, float64(v), g.Name, cause)
		}
		for cause, v := range g.StepDowns {
			ch <- prometheus.MustNewConstMetric(descStepDowns, prometheus.CounterValue, float64(v), g.Name, cause)
		}
		ch <- constHistogram(descApply, g.ApplyLatency, g.Name)
		ch <- constHistogram(descCheckpoint, g.CheckpointLatency, g.Name)
		gauge(descCkptBytes, float64(g.CheckpointBytes))
		ch <- prometheus.MustNewConstMetric(descCkptFailed, prometheus.CounterValue, float64(g.CheckpointFailures), g.Name)
		if g.LastContactMs >= 0 {
			gauge(descContactAge, float64(g.LastContactMs)/1000)
		}
	}
}

// constHistogram is a histo.Snapshot as Prometheus wants it.
func constHistogram(d *prometheus.Desc, s histo.Snapshot, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstHistogram(d, s.Count, s.Sum, s.Buckets, labels...)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
