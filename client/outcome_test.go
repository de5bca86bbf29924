package client

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/raftkv/raftkv/backup"
)

// A write whose connection is refused was never sent: the error says so
// and is a definite failure, not an indeterminate one.
func TestARefusedConnectionIsNotSentAndNotIndeterminate(t *testing.T) {
	c := New([]string{deadEndpoint(t)})
	_, err := c.Put(context.Background(), "k", []byte("v"))
	if err == nil || Sent(err) || errors.Is(err, ErrIndeterminate) || Status(err) != 0 {
		t.Fatalf("put to a dead endpoint: %v (sent %v, indeterminate %v, status %d)",
			err, Sent(err), errors.Is(err, ErrIndeterminate), Status(err))
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("put to a dead endpoint: %v, want ErrUnavailable", err)
	}
}

// A write cut off after it was sent may have been applied: indeterminate.
// A read cut off the same way was sent, but changes nothing: a definite
// failure. So is a transaction that only reads.
func TestAWriteCutOffAfterSendingIsIndeterminateAReadIsNot(t *testing.T) {
	var hits atomic.Int32
	c := New([]string{cutServer(t, &hits).URL})
	ctx := context.Background()

	_, err := c.Put(ctx, "k", []byte("v"))
	if !Sent(err) || !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("put cut off: %v (sent %v), want sent and indeterminate", err, Sent(err))
	}
	var reqErr *RequestError
	if !errors.As(err, &reqErr) || !reqErr.Sent || !reqErr.Indeterminate {
		t.Fatalf("put cut off: %#v, want a *RequestError with Sent and Indeterminate", err)
	}
	_, err = c.Txn(ctx, Txn{Success: []TxnOp{PutOp("a", []byte("1")), PutOp("b", []byte("2"))}})
	if !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("writing transaction cut off: %v, want indeterminate", err)
	}

	_, err = c.Get(ctx, "k")
	if !Sent(err) || errors.Is(err, ErrIndeterminate) {
		t.Fatalf("get cut off: %v (sent %v), want sent, not indeterminate", err, Sent(err))
	}
	_, err = c.Txn(ctx, Txn{Success: []TxnOp{GetOp("a"), GetOp("b")}})
	if !Sent(err) || errors.Is(err, ErrIndeterminate) {
		t.Fatalf("read-only transaction cut off: %v, want sent, not indeterminate", err)
	}
	if _, err := c.TxnJSON(ctx, []byte(`{"success":[{"op":"get","key":"a"}]}`)); errors.Is(err, ErrIndeterminate) {
		t.Fatalf("read-only TxnJSON cut off: %v, want not indeterminate", err)
	}
	if _, err := c.TxnJSON(ctx, []byte(`{"success":[{"op":"delete","key":"a"}]}`)); !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("writing TxnJSON cut off: %v, want indeterminate", err)
	}
}

// A read-only transaction is a read: after a broken connection it goes to
// the next endpoint, as a Get does. A writing one is never resent.
func TestAReadOnlyTransactionFailsOverAWritingOneDoesNot(t *testing.T) {
	var cutHits, liveHits atomic.Int32
	cut := cutServer(t, &cutHits)
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		liveHits.Add(1)
		writeJSON(w, map[string]any{"succeeded": true, "results": []any{}, "txn": map[string]any{"id": "x", "mode": "single"}})
	}))
	t.Cleanup(live.Close)
	c := New([]string{cut.URL, live.URL})
	if _, err := c.Txn(context.Background(), Txn{Success: []TxnOp{GetOp("a")}}); err != nil {
		t.Fatalf("read-only transaction: %v, want it served by the second endpoint", err)
	}
	c = New([]string{cut.URL, live.URL})
	if _, err := c.Txn(context.Background(), Txn{Success: []TxnOp{PutOp("a", nil)}}); !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("writing transaction: %v, want indeterminate", err)
	}
	if liveHits.Load() != 1 {
		t.Fatalf("second endpoint saw %d transactions, want only the read-only one", liveHits.Load())
	}
}

// A 200 whose body cannot be decoded answers a write that happened, with
// an unknown result: indeterminate, and the status is kept.
func TestAnUnreadableAnswerToAWriteIsIndeterminate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("{not json"))
	}))
	t.Cleanup(srv.Close)
	c := New([]string{srv.URL})
	_, err := c.Txn(context.Background(), Txn{Success: []TxnOp{PutOp("a", []byte("1"))}})
	if !errors.Is(err, ErrIndeterminate) || Status(err) != 200 || !Sent(err) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("unreadable answer to a write: %v (status %d)", err, Status(err))
	}
	_, err = c.Txn(context.Background(), Txn{Success: []TxnOp{GetOp("a")}})
	if err == nil || errors.Is(err, ErrIndeterminate) || Status(err) != 200 {
		t.Fatalf("unreadable answer to a read: %v (status %d)", err, Status(err))
	}
}

// An error answer carries the leader hint and, for a failed If-Match, the
// key's current revision.
func TestAnErrorAnswerCarriesTheLeaderHintAndTheCurrentRevision(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Raftkv-Node", "node1")
		if r.Header.Get("If-Match") != "" {
			w.Header().Set("ETag", `"42"`)
			writeErr(w, 412, "precondition_failed", "revision is 42")
			return
		}
		w.Header().Set("X-Raftkv-Leader", "node3")
		w.Header().Set("X-Raftkv-Leader-Addr", "127.0.0.1:8083")
		writeErr(w, 504, "timeout", "lost the leader")
	}))
	t.Cleanup(srv.Close)
	c := New([]string{srv.URL})
	_, err := c.Put(context.Background(), "k", []byte("v"))
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Leader != "node3" || apiErr.LeaderAddr != "127.0.0.1:8083" || !apiErr.Indeterminate || apiErr.Node != "node1" {
		t.Fatalf("504 with a hint: %#v", err)
	}
	_, err = c.Put(context.Background(), "k", []byte("v"), IfMatch(7))
	if !errors.As(err, &apiErr) || apiErr.CurrentRevision != 42 || apiErr.Indeterminate || !errors.Is(err, ErrPrecondition) {
		t.Fatalf("412: %#v", err)
	}
}

// archive returns the bytes of a real backup archive.
func archive(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "backup", "testdata", "format1.tar"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// backupServer serves body as GET /v1/backup, declaring length as its
// Content-Length (a longer length than the body cuts the stream short).
func backupServer(t *testing.T, body []byte, length int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/backup" || r.Method != http.MethodGet {
			writeErr(w, 404, "not_found", "no such path")
			return
		}
		w.Header().Set("X-Raftkv-Node", "node1")
		w.Header().Set("Content-Length", strconv.Itoa(length))
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBackupStreamsTheArchiveAndChecksIt(t *testing.T) {
	want := archive(t)
	c := New([]string{backupServer(t, want, len(want)).URL})
	var got bytes.Buffer
	rep, err := c.Backup(context.Background(), &got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("wrote %d bytes, the server sent %d", got.Len(), len(want))
	}
	inspected, err := backup.Inspect(filepath.Join("..", "backup", "testdata", "format1.tar"))
	if err != nil || !rep.OK || len(rep.Groups) != len(inspected.Groups) || rep.Manifest.ClusterID != inspected.Manifest.ClusterID {
		t.Fatalf("report %+v, want what Inspect says: %+v (%v)", rep, inspected, err)
	}
}

func TestBackupThatDoesNotVerifyIsAnErrorAndSaveBackupLeavesNoFile(t *testing.T) {
	good := archive(t)
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)/2] ^= 0xff
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		body    []byte
		length  int
		corrupt bool
	}{
		{"a flipped byte", corrupt, len(corrupt), true},
		{"a stream cut short", good[:len(good)/2], len(good), false},
	} {
		c := New([]string{backupServer(t, tc.body, tc.length).URL})
		path := filepath.Join(dir, "backup.tar")
		_, err := c.SaveBackup(context.Background(), path)
		if err == nil {
			t.Fatalf("%s: SaveBackup succeeded", tc.name)
		}
		if got := errors.Is(err, backup.ErrCorrupt); got != tc.corrupt {
			t.Errorf("%s: %v: errors.Is(err, backup.ErrCorrupt) = %v, want %v", tc.name, err, got, tc.corrupt)
		}
		var reqErr *RequestError
		if !tc.corrupt && (!errors.As(err, &reqErr) || errors.Is(err, ErrIndeterminate)) {
			t.Errorf("%s: %#v, want a *RequestError that is not indeterminate", tc.name, err)
		}
		for _, p := range []string{path, path + ".partial"} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s: %s exists after a failed backup (%v)", tc.name, p, err)
			}
		}
	}
}

// A node that already stages as many backups as it may answers 429: the
// client asks the next endpoint, which stages its own.
func TestBackupMovesOnFromABusyNode(t *testing.T) {
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		writeErr(w, 429, "overloaded", "already staging 2 backups")
	}))
	t.Cleanup(busy.Close)
	want := archive(t)
	c := New([]string{busy.URL, backupServer(t, want, len(want)).URL})
	var got bytes.Buffer
	if _, err := c.Backup(context.Background(), &got); err != nil || !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("backup past a busy node: %v (%d bytes)", err, got.Len())
	}
	// Every node busy: the answer says so.
	c = New([]string{busy.URL, busy.URL})
	if _, err := c.Backup(context.Background(), &got); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("every node busy: %v, want ErrOverloaded", err)
	}
}

func TestStaleListAsksForAStaleRead(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.URL.Query().Get("consistency"))
		writeJSON(w, map[string]any{"items": []any{}, "more": false})
	}))
	t.Cleanup(srv.Close)
	c := New([]string{srv.URL})
	if _, err := c.List(context.Background(), "p/", "", 0, Stale()); err != nil || got.Load() != "stale" {
		t.Fatalf("stale list: %v, consistency=%q", err, got.Load())
	}
	if _, err := c.List(context.Background(), "p/", "", 0); err != nil || got.Load() != "" {
		t.Fatalf("default list: %v, consistency=%q", err, got.Load())
	}
}
