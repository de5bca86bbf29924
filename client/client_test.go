package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// deadEndpoint returns an address on 127.0.0.1 where nothing listens.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestPutGetDelete(t *testing.T) {
	fake, srv := newFakeServer(t, "node1")
	c := New([]string{srv.URL})
	ctx := context.Background()

	res, err := c.Put(ctx, "a/b c", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != 1 || res.Version != 1 || res.Shard != "shard-1" || res.Node != "node1" || res.Key != "a/b c" {
		t.Fatalf("put result = %+v", res)
	}
	if got, want := fake.requests()[0].URL.EscapedPath(), "/v1/kv/a%2Fb%20c"; got != want {
		t.Fatalf("path = %q, want %q", got, want)
	}

	v, err := c.Get(ctx, "a/b c")
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Value) != "v1" || v.Revision != 1 || v.Version != 1 || v.Shard != "shard-1" || v.Node != "node1" {
		t.Fatalf("get = %+v", v)
	}

	if _, err := c.Get(ctx, "a/b c", Stale()); err != nil {
		t.Fatal(err)
	}
	reqs := fake.requests()
	if got := reqs[len(reqs)-1].URL.Query().Get("consistency"); got != "stale" {
		t.Fatalf("consistency = %q, want stale", got)
	}

	deleted, err := c.Delete(ctx, "a/b c")
	if err != nil || !deleted {
		t.Fatalf("delete = %v, %v", deleted, err)
	}
	deleted, err = c.Delete(ctx, "a/b c")
	if err != nil || deleted {
		t.Fatalf("second delete = %v, %v", deleted, err)
	}
	_, err = c.Get(ctx, "a/b c")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 404 || apiErr.Code != "not_found" || apiErr.Node != "node1" {
		t.Fatalf("api error = %#v", apiErr)
	}
	if errors.Is(err, ErrIndeterminate) {
		t.Fatal("a 404 read must not be indeterminate")
	}
}

func TestConditionalWrites(t *testing.T) {
	fake, srv := newFakeServer(t, "node1")
	c := New([]string{srv.URL})
	ctx := context.Background()

	if _, err := c.Put(ctx, "k", []byte("1"), IfAbsent()); err != nil {
		t.Fatal(err)
	}
	if got := fake.requests()[0].Header.Get("If-None-Match"); got != "*" {
		t.Fatalf("If-None-Match = %q", got)
	}
	_, err := c.Put(ctx, "k", []byte("2"), IfAbsent())
	if !errors.Is(err, ErrPrecondition) {
		t.Fatalf("second IfAbsent: %v, want ErrPrecondition", err)
	}
	if _, err := c.Put(ctx, "k", []byte("2"), IfMatch(7)); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("IfMatch(7): %v, want ErrPrecondition", err)
	}
	reqs := fake.requests()
	if got := reqs[len(reqs)-1].Header.Get("If-Match"); got != `"7"` {
		t.Fatalf("If-Match = %q", got)
	}
	res, err := c.Put(ctx, "k", []byte("2"), IfMatch(1))
	if err != nil || res.Version != 2 {
		t.Fatalf("IfMatch(1) = %+v, %v", res, err)
	}
	if _, err := c.Delete(ctx, "k", IfMatch(1)); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("delete IfMatch(1): %v", err)
	}
	if _, err := c.Delete(ctx, "k", IfAbsent()); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("delete IfAbsent: %v", err)
	}
	if _, err := c.Put(ctx, "", nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("empty key: %v", err)
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		status        int
		body          string
		write         bool
		want          error
		indeterminate bool
	}{
		{400, `{"error":{"code":"bad_request","message":"bad key"}}`, true, ErrBadRequest, false},
		{404, `{"error":{"code":"not_found","message":"x"}}`, false, ErrNotFound, false},
		{409, `{"error":{"code":"conflict","message":"x"}}`, true, ErrConflict, false},
		{412, `{"error":{"code":"precondition_failed","message":"x"}}`, true, ErrPrecondition, false},
		{413, `{"error":{"code":"too_large","message":"x"}}`, true, ErrTooLarge, false},
		// raftkv's own 503 promises the write did not happen; a 503 from
		// something in between promises nothing.
		{503, `{"error":{"code":"unavailable","message":"no leader"}}`, true, ErrUnavailable, false},
		{503, `<html>service unavailable</html>`, true, ErrUnavailable, true},
		{429, `{"error":{"code":"overloaded","message":"busy"}}`, true, ErrOverloaded, false},
		{503, `{"error":{"code":"unavailable","message":"no leader"}}`, false, ErrUnavailable, false},
		{504, `{"error":{"code":"timeout","message":"x"}}`, true, ErrTimeout, true},
		{500, `{"error":{"code":"internal","message":"x"}}`, false, ErrInternal, false},
		{502, `<html>bad gateway</html>`, false, ErrInternal, false},
		{502, `<html>bad gateway</html>`, true, ErrInternal, true},
		{500, `{"error":{"code":"internal","message":"x"}}`, true, ErrInternal, true},
		{413, ``, true, ErrTooLarge, false},
		{410, `{"error":{"code":"removed","message":"removed from the cluster"}}`, true, ErrRemoved, false},
	}
	for _, tc := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(tc.status)
			w.Write([]byte(tc.body))
		}))
		c := New([]string{srv.URL})
		var err error
		if tc.write {
			_, err = c.Put(context.Background(), "k", []byte("v"))
		} else {
			_, err = c.Get(context.Background(), "k")
		}
		srv.Close()
		if !errors.Is(err, tc.want) {
			t.Errorf("%d %s: err = %v, want %v", tc.status, tc.body, err, tc.want)
		}
		if got := errors.Is(err, ErrIndeterminate); got != tc.indeterminate {
			t.Errorf("%d write=%v: indeterminate = %v, want %v", tc.status, tc.write, got, tc.indeterminate)
		}
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != tc.status || apiErr.RetryAfter != time.Second {
			t.Errorf("%d: not an *APIError with the status and Retry-After: %#v", tc.status, err)
		}
	}
}

func TestFailoverFromDeadEndpoint(t *testing.T) {
	fake, srv := newFakeServer(t, "node2")
	dead := deadEndpoint(t)
	c := New([]string{dead, srv.URL})
	ctx := context.Background()

	// A write that could not even connect is safe to send elsewhere.
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("put with first endpoint dead: %v", err)
	}
	if _, err := c.Get(ctx, "k"); err != nil {
		t.Fatalf("get: %v", err)
	}
	// The live endpoint is remembered, so it took every request.
	if n := len(fake.requests()); n != 2 {
		t.Fatalf("live endpoint saw %d requests, want 2", n)
	}
	if c.preferred.Load() != 1 {
		t.Fatalf("preferred = %d, want 1", c.preferred.Load())
	}

	// With every endpoint dead the error says so and nothing is uncertain.
	c2 := New([]string{dead, deadEndpoint(t)})
	_, err := c2.Put(ctx, "k", []byte("v"))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrIndeterminate) {
		t.Fatalf("all dead: %v", err)
	}
	var reqErr *RequestError
	if !errors.As(err, &reqErr) {
		t.Fatalf("all dead: not a *RequestError: %#v", err)
	}
}

// TestARemovedNodeIsPassedOver: the first endpoint was removed from the
// cluster and answers 410 removed (it did nothing); reads and writes go
// on to the next endpoint, which is remembered. With nothing else to try,
// the caller gets ErrRemoved.
func TestARemovedNodeIsPassedOver(t *testing.T) {
	var removedHits atomic.Int32
	removed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		removedHits.Add(1)
		w.WriteHeader(http.StatusGone)
		w.Write([]byte(`{"error":{"code":"removed","message":"removed from the cluster: wipe its data dir and start it with --join"}}`))
	}))
	t.Cleanup(removed.Close)
	fake, srv := newFakeServer(t, "node2")
	c := New([]string{removed.URL, srv.URL})
	ctx := context.Background()
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("put with the first endpoint removed: %v", err)
	}
	if _, err := c.Get(ctx, "k"); err != nil {
		t.Fatalf("get: %v", err)
	}
	if n, r := len(fake.requests()), removedHits.Load(); n != 2 || r != 1 {
		t.Errorf("member saw %d requests, removed node %d; want 2 and 1", n, r)
	}
	_, err := New([]string{removed.URL}).Get(ctx, "k")
	if !errors.Is(err, ErrRemoved) || errors.Is(err, ErrIndeterminate) {
		t.Errorf("only a removed endpoint: %v, want ErrRemoved", err)
	}
}

// cutServer reads a request and then drops the connection without an
// answer, as a node that crashes mid-request would.
func cutServer(t *testing.T, hits *atomic.Int32) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestWriteAfterDeliveryIsNotRetried(t *testing.T) {
	var cutHits atomic.Int32
	cut := cutServer(t, &cutHits)
	fake, live := newFakeServer(t, "node2")
	c := New([]string{cut.URL, live.URL})

	_, err := c.Put(context.Background(), "k", []byte("v"))
	if !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("put: %v, want ErrIndeterminate", err)
	}
	if len(fake.requests()) != 0 {
		t.Fatal("write was resent to another endpoint after delivery")
	}
	if _, err := c.Delete(context.Background(), "k"); !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("delete: %v, want ErrIndeterminate", err)
	}
	if err := c.TransferLeadership(context.Background(), "shard-1", ""); !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("transfer: %v, want ErrIndeterminate", err)
	}

	// Reads and idempotent membership calls move on to the next endpoint.
	if _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get: %v, want ErrNotFound from the live endpoint", err)
	}
	c = New([]string{cut.URL, live.URL})
	if err := c.Join(context.Background(), "node4", "127.0.0.1:7003", "127.0.0.1:8083"); err != nil {
		t.Fatalf("join: %v", err)
	}
	if cutHits.Load() < 4 {
		t.Fatalf("cut server hits = %d", cutHits.Load())
	}
}

func TestTimeout(t *testing.T) {
	var gotTimeout, gotPrefix atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotTimeout.Store(r.URL.Query().Get("timeout"))
		gotPrefix.Store(r.URL.Query().Get("prefix"))
		_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client going away
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	c := New([]string{srv.URL}, WithTimeout(200*time.Millisecond))

	_, err := c.Get(context.Background(), "k")
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrIndeterminate) {
		t.Fatalf("get: %v", err)
	}
	hint, _ := gotTimeout.Load().(string)
	if d, perr := time.ParseDuration(hint); perr != nil || d <= 0 || d > 200*time.Millisecond {
		t.Fatalf("timeout hint = %q", hint)
	}
	_, err = c.Put(context.Background(), "k", []byte("v"))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("put: %v, want timeout and indeterminate", err)
	}

	// A caller's later deadline does not lift the client's timeout, and
	// the hint travels with the request's other parameters.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := c.List(ctx, "p/", "", 10); !errors.Is(err, ErrTimeout) {
		t.Fatalf("list under an hour's deadline: %v, want the client's 200ms timeout", err)
	}
	hint, _ = gotTimeout.Load().(string)
	if d, perr := time.ParseDuration(hint); perr != nil || d <= 0 || d > 200*time.Millisecond {
		t.Fatalf("list: timeout hint = %q", hint)
	}
	if p, _ := gotPrefix.Load().(string); p != "p/" {
		t.Fatalf("list: prefix = %q, want p/", p)
	}
}

func TestListDecodesValues(t *testing.T) {
	_, srv := newFakeServer(t, "node1")
	c := New([]string{strings.TrimPrefix(srv.URL, "http://")}) // host:port form
	ctx := context.Background()
	bin := []byte{0xff, 0x00, 0xfe}
	for k, v := range map[string][]byte{"p/a": []byte("text"), "p/b": bin, "p/c": {}, "q/x": []byte("other")} {
		if _, err := c.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.List(ctx, "p/", "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !res.More || len(res.Items) != 2 || res.Items[0].Key != "p/a" || string(res.Items[0].Value) != "text" ||
		!bytes.Equal(res.Items[1].Value, bin) {
		t.Fatalf("page 1 = %+v", res)
	}
	res, err = c.List(ctx, "p/", res.Items[1].Key, 2)
	if err != nil {
		t.Fatal(err)
	}
	if res.More || len(res.Items) != 1 || res.Items[0].Key != "p/c" || res.Items[0].Value == nil || len(res.Items[0].Value) != 0 {
		t.Fatalf("page 2 = %+v", res)
	}
}

func TestClusterCalls(t *testing.T) {
	fake, srv := newFakeServer(t, "node1")
	c := New([]string{srv.URL + "/"})
	ctx := context.Background()

	st, err := c.Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ClusterID != "c-123" || st.Shards != 2 || st.Node != "node1" || len(st.Nodes) != 1 || len(st.Groups) != 1 {
		t.Fatalf("status = %+v", st)
	}
	g, ok := st.Group("meta")
	if !ok || g.Leader != "node1" || g.Term != 3 || g.CommitIndex != 10 || g.AppliedIndex != 9 || len(g.Voters) != 1 {
		t.Fatalf("meta = %+v", g)
	}
	if string(st.Raw) != fakeClusterJSON {
		t.Fatalf("raw = %s", st.Raw)
	}

	if err := c.Join(ctx, "node4", "127.0.0.1:7003", "127.0.0.1:8083"); err != nil {
		t.Fatal(err)
	}
	if got, want := fake.lastBody(), `{"http_addr":"127.0.0.1:8083","id":"node4","raft_addr":"127.0.0.1:7003"}`; got != want {
		t.Fatalf("join body = %s, want %s", got, want)
	}
	if err := c.Leave(ctx, "node4"); err != nil {
		t.Fatal(err)
	}
	if err := c.Leave(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("leave ghost: %v", err)
	}
	if err := c.TransferLeadership(ctx, "shard-2", "node3"); err != nil {
		t.Fatal(err)
	}
	if got, want := fake.lastBody(), `{"group":"shard-2","to":"node3"}`; got != want {
		t.Fatalf("transfer body = %s", got)
	}
	if err := c.TransferLeadership(ctx, "shard-2", ""); err != nil {
		t.Fatal(err)
	}
	if got, want := fake.lastBody(), `{"group":"shard-2"}`; got != want {
		t.Fatalf("transfer body = %s", got)
	}
	reqs := fake.requests()
	if ct := reqs[len(reqs)-1].Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type = %q", ct)
	}
	if err := c.At(srv.URL).Live(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.At(deadEndpoint(t)).Live(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("live on dead endpoint: %v", err)
	}
}

func TestNoEndpoints(t *testing.T) {
	c := New([]string{"", " "})
	if _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("err = %v", err)
	}
}

func TestTLSEndpointWithoutScheme(t *testing.T) {
	f := &fakeServer{t: t, node: "node1"}
	f.mu.data = map[string]fakeEntry{}
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	hostPort := strings.TrimPrefix(srv.URL, "https://")

	c := New([]string{hostPort}, WithTLS(&tls.Config{RootCAs: roots}))
	if got, want := c.Endpoints(), []string{"https://" + hostPort}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("endpoints = %v, want %v", got, want)
	}
	if _, err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	if got := c.At(hostPort).Endpoints()[0]; got != "https://"+hostPort {
		t.Fatalf("At(%q) = %q, want https", hostPort, got)
	}

	// Without the server's CA the handshake fails, and nothing is sent.
	untrusting := New([]string{hostPort}, WithTLS(&tls.Config{RootCAs: x509.NewCertPool()}))
	if _, err := untrusting.Get(context.Background(), "k"); err == nil {
		t.Fatal("get succeeded against a server whose CA the client does not trust")
	}
	// An explicit http:// stays plaintext even with WithTLS.
	if got := New([]string{"http://" + hostPort}, WithTLS(&tls.Config{})).Endpoints()[0]; got != "http://"+hostPort {
		t.Fatalf("explicit http endpoint became %q", got)
	}
}

// TestAKeyedWriteCutOnAReusedConnectionStaysIndeterminate: net/http resends
// a request carrying an Idempotency-Key by itself when a reused connection
// breaks after the request was written. Here the resend finds the node gone
// (connection refused); the first send may still have been applied, so the
// write must end indeterminate, not "no endpoint reachable".
func TestAKeyedWriteCutOnAReusedConnectionStaysIndeterminate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		served <- func() error {
			conn, err := ln.Accept()
			if err != nil {
				return err
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			// The first request (a read) is answered, keeping the
			// connection open for the write.
			req, err := http.ReadRequest(br)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, req.Body)
			body := `{"error":{"code":"not_found","message":"no such key"}}`
			fmt.Fprintf(conn, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			// The write arrives on the same connection; the node dies
			// before answering it: nothing listens any more.
			req, err = http.ReadRequest(br)
			if err != nil {
				return err
			}
			if req.Header.Get("Idempotency-Key") == "" {
				return errors.New("the write carried no Idempotency-Key")
			}
			_, _ = io.Copy(io.Discard, req.Body)
			ln.Close()
			return nil
		}()
	}()
	c := New([]string{ln.Addr().String()}, WithIdempotentRetry(0))
	if _, err := c.Get(t.Context(), "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get: %v, want ErrNotFound", err)
	}
	_, err = c.Put(t.Context(), "k", []byte("v"), WithIdempotencyKey(NewIdempotencyKey()))
	if serr := <-served; serr != nil {
		t.Fatal(serr)
	}
	if !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("put cut after delivery: %v, want ErrIndeterminate", err)
	}
}

// Puts share one header when they carry no condition: a conditional put
// or one under an idempotency key must not leave its headers on the next.
func TestEachPutCarriesItsOwnHeadersOnly(t *testing.T) {
	fake, srv := newFakeServer(t, "node1")
	c := New([]string{srv.URL}, WithUserAgent("tester/1"))
	ctx := context.Background()

	first, err := c.Put(ctx, "k", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", []byte("2"), IfMatch(first.Revision)); err != nil {
		t.Fatal(err)
	}
	keyed, err := c.Put(ctx, "k", []byte("3"), WithIdempotencyKey("key-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", []byte("4"), IfMatch(keyed.Revision)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", []byte("5")); err != nil {
		t.Fatal(err)
	}
	reqs := fake.requests()
	if len(reqs) != 5 {
		t.Fatalf("%d requests, want 5", len(reqs))
	}
	for i, r := range reqs {
		if got := r.Header.Get("Content-Type"); got != "application/octet-stream" {
			t.Errorf("put %d: Content-Type %q", i+1, got)
		}
		if got := r.Header.Get("User-Agent"); got != "tester/1" {
			t.Errorf("put %d: User-Agent %q", i+1, got)
		}
	}
	if got, want := reqs[1].Header.Get("If-Match"), strconv.Quote(strconv.FormatUint(first.Revision, 10)); got != want {
		t.Errorf("the conditional put's If-Match is %q", got)
	}
	if got := reqs[2].Header.Get(headerIdempotencyKey); got != "key-1" {
		t.Errorf("the keyed put's %s is %q", headerIdempotencyKey, got)
	}
	for _, i := range []int{0, 2, 4} {
		if got := reqs[i].Header.Get("If-Match"); got != "" {
			t.Errorf("put %d carries If-Match %q", i+1, got)
		}
	}
	for _, i := range []int{3, 4} {
		if got := reqs[i].Header.Get(headerIdempotencyKey); got == "key-1" {
			t.Errorf("put %d carries the keyed put's %s", i+1, headerIdempotencyKey)
		}
	}
	if len(octetStream) != 1 || len(octetStream["Content-Type"]) != 1 {
		t.Errorf("the shared put header was changed: %v", octetStream)
	}
}
