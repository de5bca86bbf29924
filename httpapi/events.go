package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/cluster"
)

// maxEventStreams bounds the event streams a node serves at once: each
// holds a buffer of events and a request slot for as long as it lasts.
const maxEventStreams = 64

// streamKeepAlive is how often an idle event stream gets a comment line,
// so that proxies and clients see the connection is alive.
const streamKeepAlive = 15 * time.Second

// handleEvents streams this node's raft events as Server-Sent Events:
// "event: TYPE" and "data: {json}" per event, until the client goes away,
// the node shuts down, or the client falls so far behind that the node
// drops it (a final "overflow" event: reconnect).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if s.streams.Add(1) > maxEventStreams {
		s.streams.Add(-1)
		w.Header().Set("Retry-After", "5")
		writeError(w, fmt.Errorf("%w: %d event streams are open on this node, the most it serves", cluster.ErrOverloaded, maxEventStreams))
		return
	}
	defer s.streams.Add(-1)
	events, cancel := s.svc.Events()
	defer cancel()
	sse := startSSE(w)
	if !sse.comment("raftkv events from " + s.svc.ID()) {
		return
	}
	tick := time.NewTicker(streamKeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stopStreams:
			return
		case <-tick.C:
			if !sse.comment("keep-alive") {
				return
			}
		case e, ok := <-events:
			if !ok {
				return
			}
			b, err := json.Marshal(e)
			if err != nil {
				return
			}
			if !sse.event("", e.Type, b) || e.Type == cluster.EventOverflow {
				return
			}
		}
	}
}

// EndStreams ends every event stream this server is serving, so that a
// graceful shutdown (http.Server.Shutdown, which waits for requests to
// finish) does not wait on them: register it with RegisterOnShutdown.
func (s *Server) EndStreams() {
	s.stopOnce.Do(func() { close(s.stopStreams) })
}
