package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/cluster"
)

// ServerLimits bound what one node's HTTP server accepts, so that no client,
// however slow, large or numerous its requests, can make the node hold
// unbounded memory, goroutines or connections. Configure applies the
// connection-level ones to an *http.Server; WithLimits gives the rest to
// New. docs/api.md lists them all.
type ServerLimits struct {
	// MaxConcurrentRequests bounds the requests being served at once. Past
	// it a request is answered 503 unavailable with Retry-After at once,
	// without queueing. /livez, /readyz and /metrics are not counted, so
	// operators can look at an overloaded node.
	MaxConcurrentRequests int
	// MaxHeaderBytes bounds a request's line and headers; net/http answers
	// a larger one 431.
	MaxHeaderBytes int
	// ReadHeaderTimeout is how long a client has to send its headers; a
	// slower one (slow-loris) is disconnected.
	ReadHeaderTimeout time.Duration
	// ReadTimeout is how long a client has to send the whole request,
	// body included. net/http lifts it once the body is read, so it never
	// cancels a handler that takes longer (a backup, a join, ?timeout=).
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from its headers to the end of its
	// answer, so a client that stops reading cannot hold a request slot.
	// It is above the longest ?timeout=. A backup download replaces it
	// with a deadline that moves with every write (backupStallTimeout).
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request.
	IdleTimeout time.Duration
	// MaxTxnBytes is the node's transaction limit (--txn-max-bytes); a
	// POST /v1/txn body may be txnBodyFactor times that, since JSON
	// escaping and base64 grow the keys and values in it.
	MaxTxnBytes int
}

// Defaults of ServerLimits.
const (
	// DefaultMaxConcurrentRequests leaves room for the 256 writers of
	// scripts/stability.sh many times over, and for the requests a node
	// forwards on behalf of the others; each request costs a goroutine and
	// its buffers, so 4096 of them fit in tens of MiB.
	DefaultMaxConcurrentRequests = 4096
	DefaultMaxHeaderBytes        = 64 << 10
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultReadTimeout           = time.Minute
	DefaultWriteTimeout          = MaxTimeout + 30*time.Second
	DefaultIdleTimeout           = 2 * time.Minute
)

const (
	// txnBodyFactor: a transaction body may be this many times the
	// transaction's byte limit (base64 is 4/3, JSON escapes up to 6x for
	// control bytes, and each op adds its field names).
	txnBodyFactor = 4
	// maxJSONBody bounds the JSON bodies of cluster operations (join,
	// leave, transfer-leadership): a few ids and addresses.
	maxJSONBody = 64 << 10
	// backupStallTimeout: a backup download is cut once the client has
	// not taken any bytes for this long.
	backupStallTimeout = time.Minute
)

// DefaultServerLimits returns the limits a node runs with unless told
// otherwise.
func DefaultServerLimits() ServerLimits {
	return ServerLimits{
		MaxConcurrentRequests: DefaultMaxConcurrentRequests,
		MaxHeaderBytes:        DefaultMaxHeaderBytes,
		ReadHeaderTimeout:     DefaultReadHeaderTimeout,
		ReadTimeout:           DefaultReadTimeout,
		WriteTimeout:          DefaultWriteTimeout,
		IdleTimeout:           DefaultIdleTimeout,
		MaxTxnBytes:           cluster.DefaultTxnConfig().MaxBytes,
	}
}

// Validate checks that every limit is positive.
func (l ServerLimits) Validate() error {
	switch {
	case l.MaxConcurrentRequests < 1:
		return fmt.Errorf("max concurrent requests must be positive, got %d", l.MaxConcurrentRequests)
	case l.MaxHeaderBytes < 1 || l.MaxTxnBytes < 1:
		return errors.New("max header bytes and max txn bytes must be positive")
	case l.ReadHeaderTimeout <= 0 || l.ReadTimeout <= 0 || l.WriteTimeout <= 0 || l.IdleTimeout <= 0:
		return errors.New("http timeouts must be positive")
	}
	return nil
}

// Configure sets srv's header size and timeouts from l. srv.Handler should
// be a Server built WithLimits(l), which enforces the rest.
func (l ServerLimits) Configure(srv *http.Server) {
	srv.MaxHeaderBytes = l.MaxHeaderBytes
	srv.ReadHeaderTimeout = l.ReadHeaderTimeout
	srv.ReadTimeout = l.ReadTimeout
	srv.WriteTimeout = l.WriteTimeout
	srv.IdleTimeout = l.IdleTimeout
}

// Option changes how New builds a Server.
type Option func(*Server)

// WithLimits makes the Server enforce l's request limits (concurrency and
// body sizes); l must pass Validate. Without it New uses
// DefaultServerLimits.
func WithLimits(l ServerLimits) Option {
	return func(s *Server) { s.limits = l }
}

// Reasons a request is refused before it reaches the Service, as counted
// by raftkv_http_rejected_total.
const (
	rejectConcurrency = "max_concurrent_requests"
	rejectBody        = "body_too_large"
	rejectBackups     = "max_concurrent_backups"
	rejectWaiters     = "max_waiters"       // blocking queries (watch.go)
	rejectWatches     = "max_watch_streams" // GET /v1/watch (watch.go)
)

// unlimited are the paths answered even past MaxConcurrentRequests: they
// are cheap, and operators need them most when the node is overloaded.
var unlimited = map[string]bool{"/livez": true, "/readyz": true, "/metrics": true}

// admit claims a request slot for r; release gives it back. ok is false
// when every slot is taken.
func (s *Server) admit(r *http.Request) (release func(), ok bool) {
	if unlimited[r.URL.Path] {
		return func() {}, true
	}
	if s.inflight.Add(1) > int64(s.limits.MaxConcurrentRequests) {
		s.inflight.Add(-1)
		return nil, false
	}
	return func() { s.inflight.Add(-1) }, true
}

// errBusy answers a request refused for want of a slot.
func (s *Server) errBusy() error {
	return fmt.Errorf("%w: this node is already serving %d requests (--max-concurrent-requests); retry shortly or on another node",
		cluster.ErrUnavailable, s.limits.MaxConcurrentRequests)
}

// bodyTooLarge returns, when err is a body read that hit its
// http.MaxBytesReader bound, ErrTooLarge naming what was too large, and
// counts the rejection; for any other err it returns nil.
func (s *Server) bodyTooLarge(err error, what string) error {
	var mb *http.MaxBytesError
	if !errors.As(err, &mb) {
		return nil
	}
	return s.refuseBody(what, mb.Limit)
}

// refuseBody counts and returns the error of a body over its limit.
func (s *Server) refuseBody(what string, limit int64) error {
	s.metrics.rejected.WithLabelValues(rejectBody).Inc()
	return fmt.Errorf("%w: %s is over the limit of %d bytes; nothing was done", cluster.ErrTooLarge, what, limit)
}

// limitBody bounds r's body at limit bytes. A declared Content-Length over
// it is refused at once, without reading anything.
func (s *Server) limitBody(w http.ResponseWriter, r *http.Request, limit int64, what string) (io.Reader, error) {
	if r.ContentLength > limit {
		return nil, s.refuseBody(fmt.Sprintf("%s (%d bytes)", what, r.ContentLength), limit)
	}
	return http.MaxBytesReader(w, r.Body, limit), nil
}

// stallWriter gives each write of a long download its own deadline, so a
// download of any length is never cut while the client keeps reading,
// and one that stops reading is cut after stall.
type stallWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (s *stallWriter) Write(p []byte) (int, error) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	return s.w.Write(p)
}
