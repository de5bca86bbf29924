package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// keyRecorder answers every write with status (and the error body of code)
// and records the Idempotency-Key of each request.
type keyRecorder struct {
	mu     sync.Mutex
	keys   []string
	status int
	code   string
}

func (k *keyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Raftkv-Node", "node1")
	if r.Method == http.MethodGet {
		fmt.Fprint(w, `{"node":"node1","groups":[]}`) // the leader routing's look at the cluster
		return
	}
	k.mu.Lock()
	k.keys = append(k.keys, r.Header.Get("Idempotency-Key"))
	k.mu.Unlock()
	if k.status != http.StatusOK {
		w.WriteHeader(k.status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"scripted"}}`, k.code)
		return
	}
	switch r.URL.Path {
	case "/v1/txn":
		fmt.Fprint(w, `{"succeeded":true,"results":[],"txn":{"id":"single.1","mode":"single","shards":["shard-1"]}}`)
	default:
		fmt.Fprint(w, `{"key":"k","revision":1,"version":1,"shard":"shard-1","deleted":true}`)
	}
}

func (k *keyRecorder) sent() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.keys...)
}

// TestWritesGoUnderTheGivenIdempotencyKey: --idempotency-key is sent as
// given by put, del and txn.
func TestWritesGoUnderTheGivenIdempotencyKey(t *testing.T) {
	rec := &keyRecorder{status: http.StatusOK}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	ep := "--endpoints=" + srv.URL
	for _, args := range [][]string{
		{"put", "k", "v", "--idempotency-key", "put-1", ep},
		{"del", "k", "--idempotency-key", "del-1", ep},
		{"txn", "-f", writeTemp(t, `{"success":[{"op":"put","key":"a","value":"1"}]}`), "--idempotency-key", "txn-1", ep},
	} {
		if code, _, errOut := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: %d %s", args, code, errOut)
		}
	}
	if got := strings.Join(rec.sent(), ","); got != "put-1,del-1,txn-1" {
		t.Fatalf("keys sent %s", got)
	}
	if code, _, _ := runCLI(t, "del", "--prefix", "p/", "--yes", "--idempotency-key", "x", ep); code == 0 {
		t.Fatal("del --prefix took --idempotency-key")
	}
}

// TestAnUnknownOutcomeNamesTheKeyToRunAgainWith: a write answered 504
// exits 1 and says which --idempotency-key finds out; running again with it
// sends the same key.
func TestAnUnknownOutcomeNamesTheKeyToRunAgainWith(t *testing.T) {
	rec := &keyRecorder{status: http.StatusGatewayTimeout, code: "timeout"}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	ep := "--endpoints=" + srv.URL
	code, _, errOut := runCLI(t, "put", "k", "v", ep)
	m := regexp.MustCompile(`--idempotency-key (\S+)`).FindStringSubmatch(errOut)
	if code != 1 || m == nil {
		t.Fatalf("put answered 504: exit %d, stderr %q; want 1 and the key to run again with", code, errOut)
	}
	if sent := rec.sent(); len(sent) != 1 || sent[0] != m[1] {
		t.Fatalf("keys sent %q, the note names %q", sent, m[1])
	}
	runCLI(t, "put", "k", "v", "--idempotency-key", m[1], ep)
	if sent := rec.sent(); len(sent) != 2 || sent[1] != m[1] {
		t.Fatalf("keys sent %q, want %q again", sent, m[1])
	}
}

// writeTemp writes body to a file of the test's temp dir and returns its path.
func writeTemp(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "txn.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
