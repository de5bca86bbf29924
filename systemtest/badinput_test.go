package systemtest

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestBadInput sends malformed and oversized requests to a real node and
// checks the documented error for each, that nothing was applied, and that
// the process is still up.
func TestBadInput(t *testing.T) {
	skipShort(t)
	c := StartClusterWith(t, Config{Nodes: 1, Shards: 2, ExtraArgs: []string{"--max-value-bytes", "1024"}})
	n := c.Nodes[0]

	post := func(what, path, body string, status int, code string) {
		t.Helper()
		r := mustDo(t, n, http.MethodPost, path, []byte(body), "Content-Type", "application/json")
		checkError(t, what, r, status, code)
	}
	post("join with malformed JSON", "/v1/cluster/join", `{"id":"node9",`, http.StatusBadRequest, "bad_request")
	post("join with a non-object body", "/v1/cluster/join", `[1,2,3]`, http.StatusBadRequest, "bad_request")
	post("join without an id", "/v1/cluster/join", `{"raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`, http.StatusBadRequest, "bad_request")
	post("leave with malformed JSON", "/v1/cluster/leave", `{"id":`, http.StatusBadRequest, "bad_request")
	post("transfer-leadership with malformed JSON", "/v1/cluster/transfer-leadership", `nope`, http.StatusBadRequest, "bad_request")

	// Values: the limit itself is fine, one byte more is 413 and not stored.
	atLimit := strings.Repeat("v", 1024)
	mustPut(t, n, "bad/at-limit", atLimit)
	mustOK(t, checkValue(n, "bad/at-limit", atLimit, ""))
	for _, size := range []int{1025, 2 << 20} {
		r := mustDo(t, n, http.MethodPut, KeyPath("bad/too-big"), []byte(strings.Repeat("x", size)))
		checkError(t, "PUT value over --max-value-bytes", r, http.StatusRequestEntityTooLarge, "too_large")
	}
	checkError(t, "GET after rejected oversize PUT", mustDo(t, n, http.MethodGet, KeyPath("bad/too-big"), nil), http.StatusNotFound, "not_found")

	// Keys: 4096 bytes is the longest allowed.
	longest := strings.Repeat("k", 4096)
	mustPut(t, n, longest, "long")
	mustOK(t, checkValue(n, longest, "long", ""))
	tooLong := strings.Repeat("k", 4097)
	checkError(t, "PUT 4097-byte key", mustDo(t, n, http.MethodPut, KeyPath(tooLong), []byte("x")), http.StatusBadRequest, "bad_request")
	checkError(t, "GET 4097-byte key", mustDo(t, n, http.MethodGet, KeyPath(tooLong), nil), http.StatusBadRequest, "bad_request")
	checkError(t, "PUT key that is not UTF-8", mustDo(t, n, http.MethodPut, "/v1/kv/bad%FF%FEkey", []byte("x")), http.StatusBadRequest, "bad_request")

	checkError(t, "GET with consistency=bogus", mustDo(t, n, http.MethodGet, KeyPath("bad/at-limit")+"?consistency=bogus", nil), http.StatusBadRequest, "bad_request")

	for _, p := range []string{"/v1/nope", "/nope", "/v1/cluster/nope"} {
		checkError(t, "GET "+p, mustDo(t, n, http.MethodGet, p, nil), http.StatusNotFound, "not_found")
	}

	// Nothing but the two good writes was applied, and the node is fine.
	lr := list(t, n, "prefix=")
	if got, want := itemKeys(lr), []string{"bad/at-limit", longest}; !slices.Equal(got, want) {
		t.Errorf("after bad input the store holds %d keys %.80q, want only the 2 good ones", len(got), got)
	}
	mustOK(t, n.Live(t.Context()))
	if !n.Running() {
		t.Fatalf("node exited")
	}
	mustOK(t, n.Stop())
}
