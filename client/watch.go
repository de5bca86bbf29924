package client

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrCompacted is matched (errors.Is) by a *CompactedError.
var ErrCompacted = errors.New("raftkv: watch history compacted")

// CompactedError ends a watch whose resume point the serving node's
// change history no longer reaches (docs/watch.md): read the current
// state (List gives its cursor) and watch again from there.
type CompactedError struct {
	Shard string
	// Oldest is the oldest revision of Shard the node still holds.
	Oldest uint64
	// Cursor is where the watch had got to.
	Cursor  string
	Message string
}

func (e *CompactedError) Error() string { return "raftkv: watch: " + e.Message }

// Is makes errors.Is(err, ErrCompacted) match.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// WatchEvent is one change seen by Watch.
type WatchEvent struct {
	Type  string // "put" or "delete"
	Key   string
	Value []byte // the new value of a put; nil for a delete
	// Revision is the index of the entry that made the change in Shard;
	// a put also has the key's CreateRevision and Version.
	Revision       uint64
	CreateRevision uint64
	Version        uint64
	Shard          string
	// Cursor is the watch's position after this event: WatchFrom(Cursor)
	// resumes just after it.
	Cursor string
}

// WatchOption changes how Watch starts and reconnects.
type WatchOption func(*watchOptions)

type watchOptions struct {
	from  string
	retry time.Duration
}

// WatchFrom starts the watch after cursor (a WatchEvent.Cursor, or a
// List's Cursor) instead of at the current state.
func WatchFrom(cursor string) WatchOption { return func(o *watchOptions) { o.from = cursor } }

// WatchRetry is how long Watch keeps trying the endpoints, one after the
// other, when none serves the stream, before it gives up with the last
// error. Default DefaultWatchRetry.
func WatchRetry(d time.Duration) WatchOption { return func(o *watchOptions) { o.retry = d } }

// DefaultWatchRetry is Watch's default WatchRetry: long enough to ride
// out a leader election and a node restart.
const DefaultWatchRetry = time.Minute

// maxWatchLine bounds one line of a watch stream: an event carries a value,
// base64 encoded, of up to the server's value limit.
const maxWatchLine = 8 << 20

// Watch follows the changes to keys under prefix ("" for every key) and
// yields them in order (each shard's in revision order; docs/watch.md).
// When the stream breaks (a node stops, a network cut) it reconnects by
// itself to the next endpoint with the last cursor, so no change is lost
// or repeated. It yields a non-nil error and stops when ctx ends (ctx's
// error), when the resume point was compacted away (*CompactedError),
// when a node refuses the watch for a reason a retry does not fix (such
// as 400 or 401), or when no endpoint serves it for WatchRetry. The
// per-call timeout of WithTimeout does not apply: a watch lasts as long as
// ctx. Stop early by breaking out of the loop.
func (c *Client) Watch(ctx context.Context, prefix string, opts ...WatchOption) iter.Seq2[WatchEvent, error] {
	o := watchOptions{retry: DefaultWatchRetry}
	for _, opt := range opts {
		opt(&o)
	}
	return func(yield func(WatchEvent, error) bool) {
		if len(c.endpoints) == 0 {
			yield(WatchEvent{}, ErrNoEndpoints)
			return
		}
		w := &watchRun{c: c, prefix: prefix, cursor: o.from}
		idx := int(c.preferred.Load())
		wait := 100 * time.Millisecond
		failingSince := time.Time{}
		for {
			base := c.endpoints[idx%len(c.endpoints)]
			progressed, stop, err := w.stream(ctx, base, yield)
			if stop {
				return
			}
			if ctx.Err() != nil {
				yield(WatchEvent{}, ctx.Err())
				return
			}
			if progressed {
				failingSince, wait = time.Time{}, 100*time.Millisecond
			} else if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > o.retry {
				yield(WatchEvent{}, err)
				return
			}
			idx++ // another node serves the rest
			if idx%len(c.endpoints) == 0 || !progressed {
				select {
				case <-ctx.Done():
					yield(WatchEvent{}, ctx.Err())
					return
				case <-time.After(wait):
				}
				wait = min(2*wait, 2*time.Second)
			}
		}
	}
}

// watchRun is one Watch call's state across reconnections.
type watchRun struct {
	c      *Client
	prefix string
	cursor string // "" until the first stream said where it started
}

// stream follows one connection to base. progressed reports that the
// node served the stream; stop that the watch is over (an error yielded,
// or the caller stopped); err is why the stream ended otherwise.
func (w *watchRun) stream(ctx context.Context, base string, yield func(WatchEvent, error) bool) (progressed, stop bool, err error) {
	q := url.Values{}
	if w.prefix != "" {
		q.Set("prefix", w.prefix)
	}
	if w.cursor != "" {
		q.Set("from", w.cursor)
	}
	u := base + "/v1/watch"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hreq, err := http.NewRequestWithContext(sctx, http.MethodGet, u, nil)
	if err != nil {
		yield(WatchEvent{}, err)
		return false, true, err
	}
	hreq.Header.Set("Accept", "text/event-stream")
	if w.c.userAgent != "" {
		hreq.Header.Set("User-Agent", w.c.userAgent)
	}
	if w.c.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+w.c.token)
	}
	hresp, err := w.c.hc.Do(hreq)
	if err != nil {
		return false, false, &RequestError{Op: "GET /v1/watch", Endpoint: base, Err: err}
	}
	defer hresp.Body.Close()
	if hresp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(hresp.Body, maxErrorBody))
		apiErr := decodeAPIError(hresp.StatusCode, data, hresp.Header.Get("X-Raftkv-Node"), false)
		if retryableWatch(hresp.StatusCode) {
			return false, false, apiErr
		}
		yield(WatchEvent{}, apiErr)
		return false, true, apiErr
	}
	if w.cursor == "" {
		// Where "now" was: a reconnection before any event resumes here.
		w.cursor = hresp.Header.Get("X-Raftkv-Cursor")
	}
	err = readSSE(hresp.Body, func(id, typ, data string) bool {
		switch typ {
		case "put", "delete":
			e, err := decodeWatchEvent(typ, data)
			if err != nil {
				yield(WatchEvent{}, fmt.Errorf("watch stream of %s: %w", base, err))
				stop = true
				return false
			}
			w.cursor = id
			if !yield(e, nil) {
				stop = true
				return false
			}
		case "progress":
			w.cursor = id
		case "compacted":
			var ce CompactedError
			var wire struct {
				Shard  string `json:"shard"`
				Oldest uint64 `json:"oldest_revision"`
				Cursor string `json:"cursor"`
				Error  string `json:"error"`
			}
			_ = json.Unmarshal([]byte(data), &wire)
			ce = CompactedError{Shard: wire.Shard, Oldest: wire.Oldest, Cursor: wire.Cursor, Message: wire.Error}
			yield(WatchEvent{}, &ce)
			stop = true
			return false
		case "error":
			var d struct{ Code, Message string }
			_ = json.Unmarshal([]byte(data), &d)
			yield(WatchEvent{}, &APIError{Status: http.StatusOK, Code: d.Code, Message: d.Message, Node: hresp.Header.Get("X-Raftkv-Node")})
			stop = true
			return false
		}
		return true
	})
	if err == nil {
		err = fmt.Errorf("watch stream of %s ended", base)
	}
	return true, stop, err
}

// retryableWatch reports whether another node (or the same one later)
// may serve a watch this status refused: the node was busy, had no
// leader to catch up with, was removed or restarting.
func retryableWatch(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusGone,
		http.StatusInternalServerError, http.StatusBadGateway:
		return true
	}
	return false
}

func decodeWatchEvent(typ, data string) (WatchEvent, error) {
	var wire struct {
		Key            string  `json:"key"`
		Value          *string `json:"value"`
		ValueBase64    *string `json:"value_base64"`
		Revision       uint64  `json:"revision"`
		CreateRevision uint64  `json:"create_revision"`
		Version        uint64  `json:"version"`
		Shard          string  `json:"shard"`
		Cursor         string  `json:"cursor"`
	}
	if err := json.Unmarshal([]byte(data), &wire); err != nil {
		return WatchEvent{}, fmt.Errorf("bad event %q: %v", data, err)
	}
	e := WatchEvent{Type: typ, Key: wire.Key, Revision: wire.Revision, CreateRevision: wire.CreateRevision,
		Version: wire.Version, Shard: wire.Shard, Cursor: wire.Cursor}
	switch {
	case wire.ValueBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*wire.ValueBase64)
		if err != nil {
			return WatchEvent{}, fmt.Errorf("bad value_base64 for key %q: %v", wire.Key, err)
		}
		e.Value = b
	case wire.Value != nil:
		e.Value = []byte(*wire.Value)
	case typ == "put":
		e.Value = []byte{}
	}
	return e, nil
}

// readSSE calls fn for each event of a Server-Sent Events stream until fn
// returns false (nil) or the stream ends (its read error, or nil at EOF).
func readSSE(r io.Reader, fn func(id, typ, data string) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxWatchLine)
	var id, typ, data string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if typ != "" && !fn(id, typ, data) {
				return nil
			}
			id, typ, data = "", "", ""
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			typ = value
		case "data":
			data = value
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}
