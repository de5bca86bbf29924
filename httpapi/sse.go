package httpapi

import (
	"fmt"
	"net/http"
	"time"
)

// sseWriter writes a Server-Sent Events stream: the one writer behind
// GET /v1/events and GET /v1/watch.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// startSSE sends the stream's headers and 200.
func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// write sends one block and flushes it. The stream outlives the server's
// write timeout, which is for ordinary requests: each write gets its own
// deadline instead. It reports whether the client took it.
func (s *sseWriter) write(format string, args ...any) bool {
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamKeepAlive + 10*time.Second))
	if _, err := fmt.Fprintf(s.w, format, args...); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

// comment sends a comment line, which clients ignore: a greeting or a
// keep-alive.
func (s *sseWriter) comment(text string) bool { return s.write(": %s\n\n", text) }

// event sends one event of type typ with a JSON (single-line) payload,
// and an id when id is not empty: the position a client resumes from,
// which it sends back as Last-Event-ID.
func (s *sseWriter) event(id, typ string, data []byte) bool {
	if id != "" {
		return s.write("id: %s\nevent: %s\ndata: %s\n\n", id, typ, data)
	}
	return s.write("event: %s\ndata: %s\n\n", typ, data)
}
