package chaos

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	kvclient "github.com/raftkv/raftkv/client"
)

// answer is what a scripted node does with one request.
type answer struct {
	status int
	body   string
	etag   string
	cut    bool // read the request, then drop the connection
}

func scriptedNode(t *testing.T, a answer) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.cut {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		if a.etag != "" {
			w.Header().Set("ETag", a.etag)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		fmt.Fprint(w, a.body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func raftkvErr(code string) string {
	return fmt.Sprintf(`{"error":{"code":%q,"message":"scripted"}}`, code)
}

func deadNode(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// The history records each key operation as the checkers need it: ok,
// a definite failure (nothing happened) or indeterminate (a write that may
// have happened). The client decides which; these are the cases the
// linearizability and set checkers depend on.
func TestKeyRequestsAreClassifiedForTheHistory(t *testing.T) {
	ok := `{"key":"k","revision":7,"version":1,"shard":"shard-1"}`
	cases := []struct {
		name   string
		f      string
		a      answer
		dead   bool
		want   Outcome
		status int
		rev    uint64
		found  bool
	}{
		{"write acknowledged", "write", answer{status: 200, body: ok, etag: `"7"`}, false, OK, 200, 7, false},
		{"write refused with 503: did not happen", "write", answer{status: 503, body: raftkvErr("unavailable")}, false, Fail, 503, 0, false},
		{"write refused with 429: did not happen", "write", answer{status: 429, body: raftkvErr("overloaded")}, false, Fail, 429, 0, false},
		{"write answered 504: may have happened", "write", answer{status: 504, body: raftkvErr("timeout")}, false, Info, 504, 0, false},
		{"write answered 500: may have happened", "write", answer{status: 500, body: raftkvErr("internal")}, false, Info, 500, 0, false},
		{"write cut off after sending: may have happened", "write", answer{cut: true}, false, Info, 0, 0, false},
		{"write to a node that refuses connections: never sent", "write", answer{}, true, Fail, 0, 0, false},
		{"cas on a stale revision: 412 with the current one", "cas", answer{status: 412, body: raftkvErr("precondition_failed"), etag: `"42"`}, false, Fail, 412, 42, false},
		{"add of an existing key: 412", "add", answer{status: 412, body: raftkvErr("precondition_failed")}, false, Fail, 412, 0, false},
		{"read of a value", "read", answer{status: 200, body: "v", etag: `"5"`}, false, OK, 200, 5, true},
		{"read of an absent key: ok, not found", "read", answer{status: 404, body: raftkvErr("not_found")}, false, OK, 404, 0, false},
		{"read answered 504: a failure, reads change nothing", "read", answer{status: 504, body: raftkvErr("timeout")}, false, Fail, 504, 0, false},
		{"read cut off: a failure", "read", answer{cut: true}, false, Fail, 0, 0, false},
	}
	for _, c := range cases {
		addr := deadNode(t)
		if !c.dead {
			addr = scriptedNode(t, c.a)
		}
		r := kvRequest(context.Background(), addr, c.f, "k", []byte("v"), 3)
		if r.Outcome != c.want || r.Status != c.status || r.Rev != c.rev || r.Found != c.found {
			t.Errorf("%s: %+v, want outcome %s, status %d, rev %d, found %v", c.name, r, c.want, c.status, c.rev, c.found)
		}
		if r.Outcome != OK && r.Err == "" {
			t.Errorf("%s: no error text recorded", c.name)
		}
	}
}

// The bank's transactions: a transfer (it writes) may be indeterminate; a
// read-all (gets only) never is.
func TestTransactionsAreClassifiedForTheHistory(t *testing.T) {
	transfer := kvclient.Txn{Success: []kvclient.TxnOp{kvclient.PutOp("a", []byte("1")), kvclient.PutOp("b", []byte("2"))}}
	readAll := kvclient.Txn{Success: []kvclient.TxnOp{kvclient.GetOp("a"), kvclient.GetOp("b")}}
	done := `{"succeeded":true,"results":[],"txn":{"id":"shard-1.1","mode":"2pc","shards":["shard-1","shard-2"]}}`
	cases := []struct {
		name   string
		t      kvclient.Txn
		a      answer
		want   Outcome
		status int
	}{
		{"transfer committed", transfer, answer{status: 200, body: done}, OK, 200},
		{"transfer conflicted: nothing applied", transfer, answer{status: 409, body: raftkvErr("conflict")}, Fail, 409},
		{"transfer without a leader: nothing applied", transfer, answer{status: 503, body: raftkvErr("unavailable")}, Fail, 503},
		{"transfer answered 504: may have committed", transfer, answer{status: 504, body: raftkvErr("timeout")}, Info, 504},
		{"transfer cut off: may have committed", transfer, answer{cut: true}, Info, 0},
		{"transfer answered 200 unreadably: committed, result unknown", transfer, answer{status: 200, body: "{"}, Info, 200},
		{"read-all answered 504: a failure", readAll, answer{status: 504, body: raftkvErr("timeout")}, Fail, 504},
		{"read-all cut off: a failure", readAll, answer{cut: true}, Fail, 0},
	}
	for _, c := range cases {
		res, err := txnRequest(context.Background(), scriptedNode(t, c.a), c.t)
		o, status, msg := outcomeOf(err)
		if o != c.want || status != c.status {
			t.Errorf("%s: outcome %s, status %d (%s), want %s, %d", c.name, o, status, msg, c.want, c.status)
		}
		if o == OK && (res.Mode != "2pc" || !res.Succeeded) {
			t.Errorf("%s: result %+v", c.name, res)
		}
	}
}
