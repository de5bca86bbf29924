package main

import (
	"cmp"
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

// fakeNode answers the documented HTTP API from an in-memory map, enough
// to drive the CLI in-process.
type fakeNode struct {
	id      string
	mu      sync.Mutex
	data    map[string][]byte
	revs    map[string]uint64
	rev     uint64
	posts   []string // bodies of POSTs to /v1/cluster/...
	cluster string   // body of GET /v1/cluster
	// overview is the body of GET /v1/cluster/overview (no nodes if
	// empty).
	overview string
	keyReqs  int // key requests and transactions received
}

func newFakeNode(t *testing.T, id string) (*fakeNode, *httptest.Server) {
	f := &fakeNode{id: id, data: map[string][]byte{}, revs: map[string]uint64{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeNode) fail(w http.ResponseWriter, status int, code, msg string) {
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, msg)
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("X-Raftkv-Node", f.id)
	path := r.URL.Path
	switch {
	case path == "/livez":
	case path == "/v1/cluster":
		io.WriteString(w, f.cluster)
	case path == "/v1/cluster/overview":
		io.WriteString(w, cmp.Or(f.overview, `{"nodes":[]}`))
	case strings.HasPrefix(path, "/v1/cluster/"):
		f.posts = append(f.posts, path+" "+string(body))
		if strings.Contains(string(body), `"ghost"`) {
			f.fail(w, 404, "not_found", "no node ghost")
			return
		}
		io.WriteString(w, `{}`)
	case path == "/v1/kv":
		f.list(w, r)
	case strings.HasPrefix(path, "/v1/kv/"):
		f.keyReqs++
		f.key(w, r, strings.TrimPrefix(path, "/v1/kv/"), body)
	case path == "/v1/txn":
		// Enough of a transaction for routing tests: the answer of a
		// single-shard one whose ops are not run.
		f.keyReqs++
		if strings.Contains(string(body), `"held"`) {
			f.fail(w, 409, "conflict", "keys locked by other transactions")
			return
		}
		io.WriteString(w, `{"succeeded":true,"results":[],"txn":{"id":"single.1","mode":"single","shards":["shard-1"]}}`)
	default:
		f.fail(w, 404, "not_found", "no route")
	}
}

func (f *fakeNode) key(w http.ResponseWriter, r *http.Request, key string, body []byte) {
	val, exists := f.data[key]
	if m := r.Header.Get("If-Match"); m != "" && strconv.Quote(strconv.FormatUint(f.revs[key], 10)) != m {
		f.fail(w, 412, "precondition_failed", "revision does not match")
		return
	}
	switch r.Method {
	case http.MethodGet:
		if !exists {
			f.fail(w, 404, "not_found", "key not found")
			return
		}
		w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(f.revs[key], 10)))
		w.Header().Set("X-Raftkv-Version", "1")
		w.Write(val)
	case http.MethodPut:
		if exists && r.Header.Get("If-None-Match") == "*" {
			f.fail(w, 412, "precondition_failed", "key exists")
			return
		}
		f.rev++
		f.data[key], f.revs[key] = body, f.rev
		fmt.Fprintf(w, `{"key":%q,"revision":%d,"version":1,"shard":"shard-1"}`, key, f.rev)
	case http.MethodDelete:
		delete(f.data, key)
		fmt.Fprintf(w, `{"deleted":%v}`, exists)
	}
}

func (f *fakeNode) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 1000
	if s := q.Get("limit"); s != "" {
		limit, _ = strconv.Atoi(s)
	}
	var keys []string
	for k := range f.data {
		if strings.HasPrefix(k, q.Get("prefix")) && k > q.Get("after") {
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
		it := map[string]any{"key": k, "revision": f.revs[k], "version": 1}
		if utf8.Valid(f.data[k]) {
			it["value"] = string(f.data[k])
		} else {
			it["value_base64"] = base64.StdEncoding.EncodeToString(f.data[k])
		}
		items = append(items, it)
	}
	json.NewEncoder(w).Encode(map[string]any{"items": items, "more": more})
}
