package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// scriptedServer answers the i-th request with answers[i] (the last one
// repeats) and records each request's Idempotency-Key.
type scriptedServer struct {
	mu      sync.Mutex
	keys    []string
	answers []func(w http.ResponseWriter, key string)
}

func newScripted(t *testing.T, answers ...func(w http.ResponseWriter, key string)) (*scriptedServer, string) {
	s := &scriptedServer{answers: answers}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func (s *scriptedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	key := r.Header.Get(headerIdempotencyKey)
	s.keys = append(s.keys, key)
	a := s.answers[min(len(s.keys), len(s.answers))-1]
	s.mu.Unlock()
	a(w, key)
}

func (s *scriptedServer) sent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

// Answers as a raftkv node of this build gives them: the key echoed.
func echoed(status int, code string, replayed bool) func(http.ResponseWriter, string) {
	return func(w http.ResponseWriter, key string) {
		if key != "" {
			w.Header().Set(headerIdempotencyKey, key)
		}
		if replayed {
			w.Header().Set(headerReplayed, "true")
		}
		if status != http.StatusOK {
			writeErr(w, status, code, "scripted")
			return
		}
		writeJSON(w, map[string]any{"key": "k", "revision": 7, "version": 1, "shard": "shard-1",
			"succeeded": true, "results": []any{}, "txn": map[string]any{"id": "shard-1.x", "mode": "2pc"}})
	}
}

// An answer from a build that ignores the header: no echo.
func unkeyed(status int, code string) func(http.ResponseWriter, string) {
	return func(w http.ResponseWriter, _ string) { writeErr(w, status, code, "scripted") }
}

// cutOff closes the connection without an answer, after the request was sent.
func cutOff(w http.ResponseWriter, _ string) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func ctx10s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestAWriteWhoseOutcomeIsUnknownIsResentUnderItsKey: the first answer is a
// 504 from a node that honours keys; the client resends with the same key
// and returns the remembered first answer.
func TestAWriteWhoseOutcomeIsUnknownIsResentUnderItsKey(t *testing.T) {
	s, url := newScripted(t, echoed(504, CodeTimeout, false), echoed(200, "", true))
	res, err := New([]string{url}).Put(ctx10s(t), "k", []byte("v"))
	if err != nil || !res.Replayed || res.Revision != 7 {
		t.Fatalf("put: %+v %v, want the replayed first answer", res, err)
	}
	keys := s.sent()
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("keys sent %q, want one key sent twice", keys)
	}
}

// TestAServerThatIgnoresKeysGetsNoResend: a 504 without the echoed key is
// from a node that may have ignored the key; resending could apply the
// write twice, so the outcome stays unknown.
func TestAServerThatIgnoresKeysGetsNoResend(t *testing.T) {
	s, url := newScripted(t, unkeyed(504, CodeTimeout), echoed(200, "", false))
	if _, err := New([]string{url}).Put(ctx10s(t), "k", []byte("v")); !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("put: %v, want indeterminate", err)
	}
	if n := len(s.sent()); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

// TestACutConnectionIsResentOnceTheClusterIsKnownToHonourKeys: a cut
// connection carries no echo; after an earlier answer echoed a key, the
// client knows the cluster honours them and resends.
func TestACutConnectionIsResentOnceTheClusterIsKnownToHonourKeys(t *testing.T) {
	s, url := newScripted(t, echoed(200, "", false), cutOff, echoed(200, "", true))
	c := New([]string{url})
	if _, err := c.Delete(ctx10s(t), "k"); err != nil {
		t.Fatal(err)
	}
	res, err := c.Put(ctx10s(t), "k", []byte("v"))
	if err != nil || !res.Replayed {
		t.Fatalf("put after a cut connection: %+v %v", res, err)
	}
	if keys := s.sent(); len(keys) != 3 || keys[1] != keys[2] || keys[0] == keys[1] {
		t.Fatalf("keys sent %q, want a new key for the put, sent twice", keys)
	}
}

// TestAResendThatDidNotHappenLeavesTheOutcomeUnknown: after a 504, every
// resend meets 503 (no leader): that says the resend did not happen, not
// the first send, so when the budget runs out the call is indeterminate,
// not unavailable.
func TestAResendThatDidNotHappenLeavesTheOutcomeUnknown(t *testing.T) {
	s, url := newScripted(t, echoed(504, CodeTimeout, false), echoed(503, CodeUnavailable, false))
	_, err := New([]string{url}, WithIdempotentRetry(300*time.Millisecond)).Put(ctx10s(t), "k", []byte("v"))
	if !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("put: %v, want indeterminate", err)
	}
	if n := len(s.sent()); n < 2 {
		t.Fatalf("%d requests, want resends", n)
	}
}

// TestTheCallersKeyIsSentAndAReusedOneIsRefused: WithIdempotencyKey is
// sent as it is, and a 422 is ErrIdempotencyKeyReused.
func TestTheCallersKeyIsSentAndAReusedOneIsRefused(t *testing.T) {
	s, url := newScripted(t, echoed(422, CodeIdempotencyKeyReused, false))
	_, err := New([]string{url}).Txn(ctx10s(t), Txn{Success: []TxnOp{PutOp("a", []byte("1"))}}, WithIdempotencyKey("order-42"))
	if !errors.Is(err, ErrIdempotencyKeyReused) {
		t.Fatalf("txn: %v, want ErrIdempotencyKeyReused", err)
	}
	if keys := s.sent(); len(keys) != 1 || keys[0] != "order-42" {
		t.Fatalf("keys sent %q", keys)
	}
}

// TestReadsAndUnkeyedClientsSendNoKey: a transaction of gets is a read;
// WithIdempotentRetry(0) sends writes once and without a key of the
// client's own.
func TestReadsAndUnkeyedClientsSendNoKey(t *testing.T) {
	s, url := newScripted(t, echoed(200, "", false))
	if _, err := New([]string{url}).Txn(ctx10s(t), Txn{Success: []TxnOp{GetOp("a")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := New([]string{url}, WithIdempotentRetry(0)).Put(ctx10s(t), "k", nil); err != nil {
		t.Fatal(err)
	}
	if keys := s.sent(); len(keys) != 2 || keys[0] != "" || keys[1] != "" {
		t.Fatalf("keys sent %q, want none", keys)
	}
}
