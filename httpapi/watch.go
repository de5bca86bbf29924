package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
)

// Watches: blocking queries (?index= and ?wait= on GET /v1/kv/{key} and
// GET /v1/kv) and the change stream GET /v1/watch. docs/watch.md states
// what they guarantee.

// watchService is offered by a Service that can watch keys
// (cluster.Node); without it the watch endpoints answer 404.
type watchService interface {
	WaitKeyChange(ctx context.Context, key string, after uint64) error
	WaitPrefixChange(ctx context.Context, prefix string, after map[string]uint64) error
	Watch(ctx context.Context, prefix string, from cluster.Cursor) (*cluster.Watcher, error)
	ParseCursor(s string) (cluster.Cursor, error)
}

var _ watchService = (*cluster.Node)(nil)

const (
	// DefaultWait is a blocking query's wait without ?wait=.
	DefaultWait = 5 * time.Minute
	// MaxWait is the longest ?wait=; a longer one is refused (400), not
	// shortened, so a client never mistakes the cut for a quiet key.
	MaxWait = 10 * time.Minute
	// MaxWaiters bounds the blocking queries a node holds at once; past
	// it a query is answered 429 overloaded with Retry-After.
	MaxWaiters = 1024
	// MaxWatchStreams bounds the change streams a node serves at once.
	MaxWatchStreams = 256
	// headerCursor carries a listing's per-shard cursor.
	headerCursor = "X-Raftkv-Cursor"
)

// blocking is a blocking query's ?index= and ?wait=.
type blocking struct {
	index string
	wait  time.Duration
}

// parseBlocking reads ?index= and ?wait=; ok is false for an ordinary
// request (neither given).
func parseBlocking(q url.Values) (b blocking, ok bool, err error) {
	if !q.Has("index") && !q.Has("wait") {
		return b, false, nil
	}
	b.index, b.wait = q.Get("index"), DefaultWait
	if b.index == "" {
		return b, true, fmt.Errorf("%w: wait= needs index=, the X-Raftkv-Index (a key) or X-Raftkv-Cursor (a listing) of the answer to wait past", cluster.ErrBadRequest)
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > MaxWait {
			return b, true, fmt.Errorf("%w: wait %q must be a duration between 1ms and %s, like 30s", cluster.ErrBadRequest, v, MaxWait)
		}
		b.wait = d
	}
	return b, true, nil
}

// watcher returns the Service's watch side, or an error for a Service
// that has none.
func (s *Server) watcher() (watchService, error) {
	ws, ok := s.svc.(watchService)
	if !ok {
		return nil, fmt.Errorf("%w: this node does not serve watches", errNoRoute)
	}
	return ws, nil
}

// block holds a blocking query until wait reports a change, the wait
// ends, or the client goes away (false: nothing more to answer). It claims
// a waiter slot first and gives the answer that follows the time it needs.
func (s *Server) block(w http.ResponseWriter, r *http.Request, b blocking, wait func(context.Context) error) bool {
	if s.waiters.Add(1) > MaxWaiters {
		s.waiters.Add(-1)
		s.metrics.rejected.WithLabelValues(rejectWaiters).Inc()
		writeError(w, fmt.Errorf("%w: %d blocking queries are waiting on this node, the most it holds; retry shortly or on another node", cluster.ErrOverloaded, MaxWaiters))
		return false
	}
	defer s.waiters.Add(-1)
	// The answer is written after the wait: lift the server's write
	// timeout (meant for ordinary requests) past it and the read after.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(b.wait + MaxTimeout + 30*time.Second))
	ctx, cancel := context.WithTimeout(r.Context(), b.wait)
	defer cancel()
	go func() {
		// A shutting-down server answers its waiters now (EndStreams)
		// instead of holding its graceful shutdown for their waits.
		select {
		case <-s.stopStreams:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := wait(ctx)
	switch {
	case r.Context().Err() != nil:
		return false
	case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return true
	}
	writeError(w, err)
	return false
}

// blockGet is the blocking part of GET /v1/kv/{key}?index=R: it returns
// once the key changed after revision R (true: answer with the key now).
func (s *Server) blockGet(w http.ResponseWriter, r *http.Request, key string, b blocking) bool {
	ws, err := s.watcher()
	if err == nil {
		var after uint64
		if after, err = strconv.ParseUint(b.index, 10, 64); err != nil {
			err = fmt.Errorf("%w: index %q: want the X-Raftkv-Index of an earlier answer", cluster.ErrBadRequest, b.index)
		} else if err = cluster.ValidateKey(key); err == nil {
			return s.block(w, r, b, func(ctx context.Context) error { return ws.WaitKeyChange(ctx, key, after) })
		}
	}
	writeError(w, err)
	return false
}

// blockList is the blocking part of GET /v1/kv?prefix=P&index=CURSOR.
func (s *Server) blockList(w http.ResponseWriter, r *http.Request, prefix string, b blocking) bool {
	ws, err := s.watcher()
	if err != nil {
		writeError(w, err)
		return false
	}
	cur, err := ws.ParseCursor(b.index)
	if err != nil {
		writeError(w, err)
		return false
	}
	after := make(map[string]uint64, len(cur))
	for shard, p := range cur {
		after[shard] = p.Rev
		if p.Part > 0 {
			after[shard] = p.Rev - 1 // a stream's cursor: that revision is not all read
		}
	}
	return s.block(w, r, b, func(ctx context.Context) error { return ws.WaitPrefixChange(ctx, prefix, after) })
}

// listCursor is a listing's X-Raftkv-Cursor, or "" when some shard did
// not say its index.
func listCursor(indexes map[string]uint64) string {
	c := make(cluster.Cursor, len(indexes))
	for shard, idx := range indexes {
		if idx == 0 {
			return ""
		}
		c[shard] = fsm.Pos{Rev: idx}
	}
	return c.String()
}

// blockingRoute is the metrics route of a request: a blocking query is
// counted apart from ordinary reads, so that its wait does not show as
// read latency.
func blockingRoute(route string, r *http.Request) string {
	if (route == "/v1/kv/{key}" || route == "GET /v1/kv") && strings.Contains(r.URL.RawQuery, "index") && query(r).Has("index") {
		return route + " (blocking)"
	}
	return route
}

// registerWatchMetrics exports how many blocking queries and watch
// streams the node holds.
func (s *Server) registerWatchMetrics() {
	s.metrics.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "raftkv_watch_waiters", Help: "Blocking queries (?index=) waiting on this node."},
			func() float64 { return float64(s.waiters.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "raftkv_watch_streams", Help: "Watch streams (GET /v1/watch) this node serves."},
			func() float64 { return float64(s.watchStreams.Load()) }),
	)
}

// watchEvent is the data of a put or delete event on GET /v1/watch.
type watchEvent struct {
	Type           string  `json:"type"`
	Key            string  `json:"key"`
	Value          *string `json:"value,omitempty"`
	ValueBase64    string  `json:"value_base64,omitempty"`
	Revision       uint64  `json:"revision"`
	CreateRevision uint64  `json:"create_revision,omitempty"`
	Version        uint64  `json:"version,omitempty"`
	Shard          string  `json:"shard"`
	Cursor         string  `json:"cursor"`
}

// compactedEvent ends a stream whose history is gone.
type compactedEvent struct {
	Shard string `json:"shard"`
	// Oldest is the oldest revision the serving replica still holds for
	// the shard; Cursor the position the stream had reached.
	Oldest uint64 `json:"oldest_revision"`
	Cursor string `json:"cursor"`
	Error  string `json:"error"`
}

// handleWatch streams the changes under ?prefix= as Server-Sent Events,
// from Last-Event-ID or ?from= (a cursor) or else from now.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	ws, err := s.watcher()
	if err != nil {
		writeError(w, err)
		return
	}
	if r.Header.Get("Last-Event-ID") == streamEndID {
		// A browser's EventSource reconnecting after the stream ended for
		// good: 204 tells it to stop instead of reconnecting forever.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	q := query(r)
	from := q.Get("from")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		from = id // a reconnecting EventSource repeats the URL: the id is newer
	}
	var cur cluster.Cursor
	if from != "" {
		if cur, err = ws.ParseCursor(from); err != nil {
			writeError(w, err)
			return
		}
	}
	if s.watchStreams.Add(1) > MaxWatchStreams {
		s.watchStreams.Add(-1)
		s.metrics.rejected.WithLabelValues(rejectWatches).Inc()
		writeError(w, fmt.Errorf("%w: %d watch streams are open on this node, the most it serves; retry shortly or on another node", cluster.ErrOverloaded, MaxWatchStreams))
		return
	}
	defer s.watchStreams.Add(-1)
	wt, err := ws.Watch(r.Context(), q.Get("prefix"), cur)
	if err != nil {
		writeError(w, err)
		return
	}
	defer wt.Close()
	s.streamWatch(w, r, wt)
}

// streamWatch writes the watcher's batches until the client goes away,
// the server stops, or the watch ends (compacted).
func (s *Server) streamWatch(w http.ResponseWriter, r *http.Request, wt *cluster.Watcher) {
	cur := wt.Start.Clone()
	w.Header().Set(headerCursor, cur.String())
	sse := startSSE(w)
	if !sse.comment("raftkv watch from " + s.svc.ID() + " at " + cur.String()) {
		return
	}
	tick := time.NewTicker(streamKeepAlive)
	defer tick.Stop()
	moved := false // the cursor advanced past the last id sent
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stopStreams:
			return
		case <-tick.C:
			ok := true
			if moved {
				b, _ := json.Marshal(map[string]string{"cursor": cur.String()})
				ok, moved = sse.event(cur.String(), "progress", b), false
			} else {
				ok = sse.comment("keep-alive")
			}
			if !ok {
				return
			}
		case b := <-wt.Batches():
			if b.Err != nil {
				sendWatchEnd(sse, b, cur)
				return
			}
			for i, c := range b.Changes {
				cur[b.Shard] = fsm.After(c)
				if i == len(b.Changes)-1 {
					cur[b.Shard] = b.Pos
				}
				data, _ := json.Marshal(changeEvent(b.Shard, c, cur.String()))
				if !sse.event(cur.String(), c.Kind.String(), data) {
					return
				}
			}
			if len(b.Changes) == 0 && cur[b.Shard] != b.Pos {
				cur[b.Shard], moved = b.Pos, true
			} else if len(b.Changes) > 0 {
				moved = false
			}
		}
	}
}

// streamEndID is the id of the event that ends a watch for good. An
// EventSource reconnects with the last id it got as Last-Event-ID, and a
// stream asked for after this one answers 204, which makes it stop.
const streamEndID = "end"

// sendWatchEnd writes the event that ends a watch: "compacted", or
// "error" (the caller's token stopped being valid).
func sendWatchEnd(sse *sseWriter, b cluster.WatchBatch, cur cluster.Cursor) {
	var ce *fsm.CompactedError
	if errors.As(b.Err, &ce) {
		data, _ := json.Marshal(compactedEvent{Shard: b.Shard, Oldest: ce.Oldest, Cursor: cur.String(), Error: ce.Error()})
		sse.event(streamEndID, "compacted", data)
		return
	}
	code, _ := errorStatus(b.Err)
	data, _ := json.Marshal(errorDetail{Code: code, Message: b.Err.Error()})
	sse.event(streamEndID, "error", data)
}

func changeEvent(shard string, c fsm.Change, cursor string) watchEvent {
	e := watchEvent{Type: c.Kind.String(), Key: c.KV.Key, Revision: c.Revision, Shard: shard, Cursor: cursor}
	if c.Kind != fsm.ChangePut {
		return e
	}
	e.CreateRevision, e.Version = c.KV.CreateRevision, c.KV.Version
	if utf8.Valid(c.KV.Value) {
		v := string(c.KV.Value)
		e.Value = &v
	} else {
		e.ValueBase64 = base64.StdEncoding.EncodeToString(c.KV.Value)
	}
	return e
}
