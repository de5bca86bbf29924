package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Event is one entry of a node's live event stream (GET /v1/events): a
// leader change, a raft state change, an election with its cause, a peer
// added or removed, a follower's heartbeats failing or resuming, a
// checkpoint written or loaded, a transaction finished by recovery, or
// "overflow" (the reader fell behind and lost what followed). Fields that
// do not apply to the type are empty.
type Event struct {
	At      time.Time `json:"at"`
	Node    string    `json:"node"`
	Type    string    `json:"type"`
	Group   string    `json:"group,omitempty"`
	Leader  string    `json:"leader,omitempty"`
	State   string    `json:"state,omitempty"`
	Term    uint64    `json:"term,omitempty"`
	Event   string    `json:"event,omitempty"`
	Cause   string    `json:"cause,omitempty"`
	Peer    string    `json:"peer,omitempty"`
	Index   uint64    `json:"index,omitempty"`
	Bytes   int64     `json:"bytes,omitempty"`
	Ms      int64     `json:"ms,omitempty"`
	Txn     string    `json:"txn,omitempty"`
	Outcome string    `json:"outcome,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// maxEventLine bounds one line of the stream; events are small.
const maxEventLine = 1 << 20

// Events follows the event stream of the client's first endpoint (a node
// reports what its own groups do; use At for another node) and calls fn
// for each event until ctx ends, fn returns an error, or the stream ends.
// It returns nil when ctx ended it, fn's error, or why the stream ended:
// the node went away, or it dropped this reader for falling behind (an
// "overflow" event, passed to fn first). The per-call timeout of
// WithTimeout does not apply: a stream lasts as long as ctx.
func (c *Client) Events(ctx context.Context, fn func(Event) error) error {
	if len(c.endpoints) == 0 {
		return ErrNoEndpoints
	}
	base := c.endpoints[0]
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/events", nil)
	if err != nil {
		return err
	}
	hreq.Header.Set("Accept", "text/event-stream")
	if c.userAgent != "" {
		hreq.Header.Set("User-Agent", c.userAgent)
	}
	if c.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.token)
	}
	hresp, err := c.hc.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return &RequestError{Op: "GET /v1/events", Endpoint: base, Err: err}
	}
	defer hresp.Body.Close()
	if hresp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(hresp.Body, maxErrorBody))
		return decodeAPIError(hresp.StatusCode, data, hresp.Header.Get("X-Raftkv-Node"), false)
	}
	sc := bufio.NewScanner(hresp.Body)
	sc.Buffer(make([]byte, 4096), maxEventLine)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue // "event:" lines repeat the type; comments keep the stream alive
		}
		var e Event
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return fmt.Errorf("event stream of %s: bad event %q: %v", base, data, err)
		}
		if err := fn(e); err != nil {
			return err
		}
		if e.Type == "overflow" {
			return fmt.Errorf("event stream of %s: this reader fell behind and was dropped; reconnect", base)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("event stream of %s: %w", base, err)
	}
	return fmt.Errorf("event stream of %s ended: the node stopped or went away", base)
}
