package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/registry"
	"github.com/raftkv/raftkv/ui"
)

// Service is what the HTTP layer needs from a node.
type Service interface {
	ID() string
	MaxValueBytes() int
	Put(ctx context.Context, key string, value []byte, cond fsm.Condition) (cluster.KVResult, error)
	Get(ctx context.Context, key string, c cluster.Consistency) (cluster.KVResult, error)
	WaitApplied(ctx context.Context, key string, index uint64) error
	Delete(ctx context.Context, key string, cond fsm.Condition) (cluster.KVResult, error)
	List(ctx context.Context, prefix, after string, limit int, c cluster.Consistency) (cluster.ListResult, error)
	Count(ctx context.Context, prefix string, c cluster.Consistency) (int, error)
	DeletePrefix(ctx context.Context, prefix string) (int, error)
	Status() cluster.Status
	ProbedStatus(ctx context.Context) cluster.Status
	Overview(ctx context.Context) cluster.Overview
	Events() (<-chan cluster.Event, func())
	Ready() (bool, string)
	Join(ctx context.Context, m registry.Node) error
	Leave(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, group, to string) (cluster.TransferResult, error)
	Checkpoint() ([]cluster.CheckpointInfo, error)
	PrepareBackup(ctx context.Context) (*backup.Writer, error)
	Txn(ctx context.Context, req cluster.TxnRequest) (cluster.TxnResponse, error)
	TxnRecord(ctx context.Context, id string) (fsm.Record, error)
	// LeaderHint names the leader of a group as the node knows it, and
	// its HTTP address ("" when unknown), for the leader hint of an
	// answer that could not be served.
	LeaderHint(group string) (id, httpAddr string)
	AuthService
}

var _ Service = (*cluster.Node)(nil)

// memberChecker is offered by a Service whose node can tell it was removed
// from the cluster (cluster.Node): CheckMember is then a
// cluster.ErrRemoved error that says how the node comes back.
type memberChecker interface{ CheckMember() error }

var _ memberChecker = (*cluster.Node)(nil)

// checkMember is the node's removal, or nil (also for a Service that
// cannot tell).
func (s *Server) checkMember() error {
	if m, ok := s.svc.(memberChecker); ok {
		return m.CheckMember()
	}
	return nil
}

// dataPaths are the endpoints that serve or change keys. A removed node
// answers them 410 removed, whatever the consistency asked for: its
// replicas are no longer replicated to, so even a stale read would serve
// data the cluster may have changed long ago.
var dataPaths = []string{"/v1/kv", "/v1/txn", "/v1/watch", "/v1/lease"}

func servesData(path string) bool {
	for _, p := range dataPaths {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// Request deadlines: key operations default to 5 s; membership changes wait
// for new members to catch up, so they get longer. ?timeout= overrides both.
const (
	DefaultTimeout    = 5 * time.Second
	MembershipTimeout = 60 * time.Second
	MaxTimeout        = 5 * time.Minute
	DefaultListLimit  = 1000
	MaxListLimit      = cluster.MaxListLimit // the nodes refuse bigger pages
)

// Server is the HTTP handler of one node.
type Server struct {
	svc      Service
	mux      *http.ServeMux
	metrics  *metrics
	limits   ServerLimits
	inflight atomic.Int64         // requests holding a slot (see admit)
	raftSink prometheus.Collector // hashicorp/raft's metrics (WithRaftMetrics), or nil
	// stopStreams is closed by EndStreams to end the event streams.
	stopStreams chan struct{}
	stopOnce    sync.Once
	streams     atomic.Int64 // event streams being served
	// waiters and watchStreams count blocking queries and watch streams
	// being served (watch.go).
	waiters, watchStreams atomic.Int64
}

// New builds the handler for svc.
func New(svc Service, opts ...Option) *Server {
	s := &Server{svc: svc, mux: http.NewServeMux(), metrics: newMetrics(svc), limits: DefaultServerLimits(), stopStreams: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	if s.raftSink != nil {
		s.metrics.reg.MustRegister(s.raftSink) // a fresh registry: cannot clash
	}
	s.registerWatchMetrics()
	s.mux.HandleFunc("GET /v1/kv", s.handleList)
	s.mux.HandleFunc("DELETE /v1/kv", s.handleDeletePrefix)
	s.mux.HandleFunc("GET /v1/cluster", s.handleStatus)
	s.mux.HandleFunc("GET /v1/cluster/overview", s.handleOverview)
	s.mux.HandleFunc("GET /v1/events", s.handleEvents)
	s.mux.HandleFunc("GET /v1/watch", s.handleWatch)
	s.mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	s.mux.Handle("GET /ui/", http.StripPrefix("/ui", ui.Handler()))
	s.mux.HandleFunc("POST /v1/cluster/join", s.admin(s.handleJoin))
	s.mux.HandleFunc("POST /v1/cluster/leave", s.admin(s.handleLeave))
	s.mux.HandleFunc("POST /v1/cluster/transfer-leadership", s.admin(s.handleTransfer))
	s.mux.HandleFunc("POST /v1/cluster/snapshot", s.admin(s.handleSnapshot))
	s.mux.HandleFunc("GET /v1/backup", s.admin(s.handleBackup))
	s.mux.HandleFunc("POST /v1/txn", s.handleTxn)
	s.mux.HandleFunc("GET /v1/txn/{id}", s.handleTxnRecord)
	s.mux.HandleFunc("GET /livez", s.handleLivez)
	s.mux.HandleFunc("GET /readyz", s.handleReadyz)
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.routeAuth()
	s.routeLeases()
	return s
}

// ServeHTTP routes key requests itself (keys may hold characters that
// http.ServeMux would clean or redirect) and everything else through the mux.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	rw.Header().Set(cluster.HeaderNode, s.svc.ID())
	release, ok := s.admit(r)
	if !ok {
		s.metrics.rejected.WithLabelValues(rejectConcurrency).Inc()
		writeError(rw, s.errBusy())
		s.metrics.observe("rejected", r.Method, rw.status, time.Since(start))
		return
	}
	defer release()
	route := "unauthenticated"
	if authed := s.authenticate(rw, r); authed != nil {
		route = blockingRoute(s.dispatch(rw, authed), r)
	}
	s.metrics.observe(route, r.Method, rw.status, time.Since(start))
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) string {
	if servesData(r.URL.Path) {
		if err := s.checkMember(); err != nil {
			writeError(w, err)
			return "removed"
		}
	}
	if escaped, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v1/kv/"); ok {
		key, err := url.PathUnescape(escaped)
		if err != nil {
			writeError(w, fmt.Errorf("%w: key is not a valid escaped path: %v", cluster.ErrBadRequest, err))
			return "/v1/kv/{key}"
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.handleGet(w, r, key)
		case http.MethodPut:
			s.handlePut(w, r, key)
		case http.MethodDelete:
			s.handleDelete(w, r, key)
		default:
			w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
			writeError(w, fmt.Errorf("%w: %s on a key", errNoMethod, r.Method))
		}
		return "/v1/kv/{key}"
	}
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		// The mux found nothing: answer in our error format rather than
		// its plain-text 404/405.
		if allowed := s.allowedMethods(r); allowed != "" {
			w.Header().Set("Allow", allowed)
			writeError(w, fmt.Errorf("%w: %s %s", errNoMethod, r.Method, r.URL.Path))
		} else {
			writeError(w, fmt.Errorf("%w: %s", errNoRoute, r.URL.Path))
		}
		return "unknown"
	}
	// The mux serves it (rather than h itself) so that path wildcards
	// such as {name} are filled in.
	s.mux.ServeHTTP(w, r)
	return pattern
}

// allowedMethods lists the methods that would match r's path.
func (s *Server) allowedMethods(r *http.Request) string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := s.mux.Handler(probe); p != "" {
			allowed = append(allowed, m)
		}
	}
	return strings.Join(allowed, ", ")
}

// statusRecorder remembers the status code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
