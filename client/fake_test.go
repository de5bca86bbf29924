package client

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// fakeServer mimics the documented raftkv HTTP API over an in-memory map,
// enough to exercise the client.
type fakeServer struct {
	t    *testing.T
	node string

	mu struct {
		sync.Mutex
		data     map[string]fakeEntry
		revision uint64
		requests []*http.Request // every request seen, in order
		bodies   []string
	}
}

type fakeEntry struct {
	value    []byte
	revision uint64
	version  uint64
}

func newFakeServer(t *testing.T, node string) (*fakeServer, *httptest.Server) {
	f := &fakeServer{t: t, node: node}
	f.mu.data = map[string]fakeEntry{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeServer) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.mu.requests...)
}

func (f *fakeServer) lastBody() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.bodies[len(f.mu.bodies)-1]
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, msg)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.requests = append(f.mu.requests, r)
	f.mu.bodies = append(f.mu.bodies, string(body))
	w.Header().Set("X-Raftkv-Node", f.node)

	switch {
	case r.URL.Path == "/livez" || r.URL.Path == "/readyz":
		w.WriteHeader(http.StatusOK)
	case r.URL.Path == "/v1/kv":
		f.listLocked(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/kv/"):
		f.keyLocked(w, r, strings.TrimPrefix(r.URL.Path, "/v1/kv/"), body)
	case r.URL.Path == "/v1/cluster":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, fakeClusterJSON)
	case strings.HasPrefix(r.URL.Path, "/v1/cluster/"):
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil {
			writeErr(w, 400, "bad_request", "malformed JSON")
			return
		}
		if r.URL.Path == "/v1/cluster/leave" && m["id"] == "ghost" {
			writeErr(w, 404, "not_found", "unknown node ghost")
			return
		}
		writeJSON(w, map[string]bool{"ok": true})
	default:
		writeErr(w, 404, "not_found", "no such path")
	}
}

const fakeClusterJSON = `{"cluster_id":"c-123","shards":2,` +
	`"nodes":[{"id":"node1","http_addr":"127.0.0.1:1","raft_addr":"127.0.0.1:2"}],` +
	`"groups":[{"name":"meta","leader":"node1","term":3,"commit_index":10,"applied_index":9,` +
	`"last_snapshot_index":0,"voters":["node1"],"nonvoters":[]}]}`

func (f *fakeServer) keyLocked(w http.ResponseWriter, r *http.Request, key string, body []byte) {
	e, exists := f.mu.data[key]
	if im := r.Header.Get("If-Match"); im != "" {
		want, _ := strconv.ParseUint(strings.Trim(im, `"`), 10, 64)
		if !exists || e.revision != want {
			writeErr(w, 412, "precondition_failed", "revision mismatch")
			return
		}
	}
	switch r.Method {
	case http.MethodGet:
		if !exists {
			writeErr(w, 404, "not_found", "key not found")
			return
		}
		w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(e.revision, 10)))
		w.Header().Set("X-Raftkv-Version", strconv.FormatUint(e.version, 10))
		w.Header().Set("X-Raftkv-Shard", "shard-1")
		w.Write(e.value)
	case http.MethodPut:
		if r.Header.Get("If-None-Match") == "*" && exists {
			writeErr(w, 412, "precondition_failed", "key exists")
			return
		}
		f.mu.revision++
		e = fakeEntry{value: body, revision: f.mu.revision, version: e.version + 1}
		f.mu.data[key] = e
		w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(e.revision, 10)))
		writeJSON(w, map[string]any{"key": key, "revision": e.revision, "version": e.version, "shard": "shard-1"})
	case http.MethodDelete:
		delete(f.mu.data, key)
		writeJSON(w, map[string]bool{"deleted": exists})
	}
}

func (f *fakeServer) listLocked(w http.ResponseWriter, r *http.Request) {
	prefix, after := r.URL.Query().Get("prefix"), r.URL.Query().Get("after")
	limit := 1000
	if s := r.URL.Query().Get("limit"); s != "" {
		limit, _ = strconv.Atoi(s)
	}
	var keys []string
	for k := range f.mu.data {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	more := len(keys) > limit
	if more {
		keys = keys[:limit]
	}
	items := []map[string]any{}
	for _, k := range keys {
		e := f.mu.data[k]
		it := map[string]any{"key": k, "version": e.version, "revision": e.revision}
		if utf8.Valid(e.value) {
			it["value"] = string(e.value)
		} else {
			it["value_base64"] = base64.StdEncoding.EncodeToString(e.value)
		}
		items = append(items, it)
	}
	writeJSON(w, map[string]any{"items": items, "more": more})
}
