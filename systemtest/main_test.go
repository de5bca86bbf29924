package systemtest

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// TestMain builds the server binary once for the whole package (or uses
// RAFTKV_BIN) and removes it afterwards.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips itself
	}
	dir, err := os.MkdirTemp("", "raftkv-systemtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "systemtest:", err)
		os.Exit(1)
	}
	Binary, err = nodeproc.BuildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "systemtest: building raftkv:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// skipShort skips tests that start real processes under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real raftkv processes; skipped with -short")
	}
}

// putResult is the body of a successful PUT.
type putResult struct {
	Key      string `json:"key"`
	Revision uint64 `json:"revision"`
	Version  uint64 `json:"version"`
	Shard    string `json:"shard"`
}

// errorBody is the documented error envelope.
type errorBody struct {
	Error *struct {
		Code    *string `json:"code"`
		Message *string `json:"message"`
	} `json:"error"`
}

// listResult is the body of GET /v1/kv?prefix=.
type listResult struct {
	Items []struct {
		Key         string  `json:"key"`
		Value       *string `json:"value"`
		ValueBase64 *string `json:"value_base64"`
		Version     uint64  `json:"version"`
		Revision    uint64  `json:"revision"`
	} `json:"items"`
	More bool `json:"more"`
}

// put writes key=value through n and decodes a 200 answer. Any other answer
// is returned as an error together with the response.
func put(n *Node, key, value string, headers ...string) (putResult, *Response, error) {
	var res putResult
	r, err := Do(n, http.MethodPut, KeyPath(key), []byte(value), headers...)
	if err != nil {
		return res, nil, err
	}
	if r.Status != http.StatusOK {
		return res, r, fmt.Errorf("PUT %q via %s: %s", key, n.ID, r)
	}
	if err := json.Unmarshal(r.Body, &res); err != nil {
		return res, r, fmt.Errorf("PUT %q via %s: %w in %s", key, n.ID, err, r.Body)
	}
	return res, r, nil
}

// mustPut is put that fails the test on anything but a well-formed 200.
func mustPut(t *testing.T, n *Node, key, value string, headers ...string) putResult {
	t.Helper()
	res, r, err := put(n, key, value, headers...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if res.Key != key || res.Revision == 0 || res.Version == 0 || !strings.HasPrefix(res.Shard, "shard-") {
		t.Fatalf("PUT %q via %s: odd body %s", key, n.ID, r.Body)
	}
	if got, want := r.Header.Get("ETag"), etag(res.Revision); got != want {
		t.Fatalf("PUT %q via %s: ETag %q, want %q", key, n.ID, got, want)
	}
	return res
}

// putRetry writes the same key=value through n until it gets a 200 or
// timeout passes. Retrying one value keeps the expected final state exact
// even when an earlier attempt had an unknown outcome.
func putRetry(t *testing.T, n *Node, key, value string, timeout time.Duration) putResult {
	t.Helper()
	var res putResult
	err := WaitFor(timeout, func() error {
		var err error
		res, _, err = put(n, key, value)
		return err
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return res
}

// get reads key through n. consistency may be "" for the default.
func get(n *Node, key, consistency string) (*Response, error) {
	p := KeyPath(key)
	if consistency != "" {
		p += "?consistency=" + consistency
	}
	return Do(n, http.MethodGet, p, nil)
}

// checkValue checks that n returns value for key with the given consistency.
func checkValue(n *Node, key, want, consistency string) error {
	r, err := get(n, key, consistency)
	if err != nil {
		return err
	}
	if r.Status != http.StatusOK {
		return fmt.Errorf("GET %q via %s (%s): %s", key, n.ID, consistency, r)
	}
	if string(r.Body) != want {
		return fmt.Errorf("GET %q via %s (%s): value %q, want %q", key, n.ID, consistency, r.Body, want)
	}
	return nil
}

func etag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// checkError checks the status and the documented error body.
func checkError(t *testing.T, what string, r *Response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %d, want %d; body %s", what, r.Status, status, r.Body)
		return
	}
	var eb errorBody
	if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error == nil || eb.Error.Code == nil || eb.Error.Message == nil {
		t.Errorf("%s: body %q is not {\"error\":{\"code\",\"message\"}} (%v)", what, r.Body, err)
		return
	}
	if *eb.Error.Code != code {
		t.Errorf("%s: error code %q, want %q (message %q)", what, *eb.Error.Code, code, *eb.Error.Message)
	}
	if *eb.Error.Message == "" {
		t.Errorf("%s: empty error message", what)
	}
	if ct := r.Header.Get("Content-Type"); !strings.Contains(ct, "json") {
		t.Errorf("%s: error Content-Type %q, want JSON", what, ct)
	}
}

// mustDo sends a request and fails the test on a transport error.
func mustDo(t *testing.T, n *Node, method, path string, body []byte, headers ...string) *Response {
	t.Helper()
	r, err := Do(n, method, path, body, headers...)
	if err != nil {
		t.Fatalf("%s %s via %s: %v", method, path, n.ID, err)
	}
	return r
}

// list fetches one page of GET /v1/kv.
func list(t *testing.T, n *Node, query string) listResult {
	t.Helper()
	r := mustDo(t, n, http.MethodGet, "/v1/kv?"+query, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("list %q via %s: %s", query, n.ID, r)
	}
	var lr listResult
	if err := json.Unmarshal(r.Body, &lr); err != nil {
		t.Fatalf("list %q via %s: %v in %s", query, n.ID, err, r.Body)
	}
	return lr
}

// mustOK fails the test if err is not nil.
func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%v", err)
	}
}

// ids returns the ids of nodes.
func ids(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.ID
	}
	return out
}
