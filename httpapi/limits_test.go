package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
)

// heldService is a fakeService whose Get, Txn and PrepareBackup wait until
// release is closed (reporting on entered when they start) or, with hold
// set, for hold.
type heldService struct {
	*fakeService
	entered chan struct{}
	release chan struct{}
	hold    time.Duration
	dir     string // where backups are staged
}

func newHeldService(t *testing.T) *heldService {
	return &heldService{fakeService: &fakeService{}, entered: make(chan struct{}, 1024), release: make(chan struct{}), dir: t.TempDir()}
}

func (h *heldService) wait(ctx context.Context) error {
	if h.hold > 0 {
		select {
		case <-time.After(h.hold):
		case <-ctx.Done():
		}
	} else {
		h.entered <- struct{}{}
		select {
		case <-h.release:
		case <-ctx.Done():
		}
	}
	// The request's context must outlive the wait: a read deadline that
	// cancelled it would show here.
	return ctx.Err()
}

func (h *heldService) Get(ctx context.Context, key string, _ cluster.Consistency) (cluster.KVResult, error) {
	if err := h.wait(ctx); err != nil {
		return cluster.KVResult{}, fmt.Errorf("%w: request context ended while held: %v", cluster.ErrUnavailable, err)
	}
	return cluster.KVResult{KV: fsm.KV{Key: key, Value: []byte("v"), ModRevision: 3}, Found: true}, nil
}

func (h *heldService) Txn(ctx context.Context, req cluster.TxnRequest) (cluster.TxnResponse, error) {
	if err := h.wait(ctx); err != nil {
		return cluster.TxnResponse{}, fmt.Errorf("%w: request context ended while held: %v", cluster.ErrUnavailable, err)
	}
	return h.fakeService.Txn(ctx, req)
}

func (h *heldService) PrepareBackup(ctx context.Context) (*backup.Writer, error) {
	if err := h.wait(ctx); err != nil {
		return nil, err
	}
	w, err := backup.NewWriter(h.dir, backup.Manifest{Node: "fake1"})
	if err != nil {
		return nil, err
	}
	return w, w.AddGroup("shard-1", 5, func(dst io.Writer) error {
		_, err := dst.Write([]byte(strings.Repeat("checkpoint ", 1000)))
		return err
	})
}

// startServer serves h on 127.0.0.1 with l applied to the http.Server.
func startServer(t *testing.T, h http.Handler, l ServerLimits) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	l.Configure(ts.Config)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestOversizedHeaderIs431(t *testing.T) {
	ts := startServer(t, New(&fakeService{}), DefaultServerLimits())
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/livez", nil)
	req.Header.Set("X-Padding", strings.Repeat("p", 2*DefaultMaxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("headers of %d bytes: status %d, want 431", 2*DefaultMaxHeaderBytes, resp.StatusCode)
	}
	if resp, _ := get(t, ts.URL+"/livez"); resp.StatusCode != http.StatusOK {
		t.Fatalf("livez after the refused request: %d", resp.StatusCode)
	}
}

// TestOversizedBodiesAre413AndNothingIsCalled sends each bounded body one
// byte over its bound, both with a Content-Length and streamed without
// one, and checks the service never sees the request.
func TestOversizedBodiesAre413AndNothingIsCalled(t *testing.T) {
	svc := &fakeService{}
	s := New(svc)
	txnBound := txnBodyFactor * DefaultServerLimits().MaxTxnBytes
	cases := []struct {
		name, method, target string
		body                 string
	}{
		{"value", http.MethodPut, "/v1/kv/k", strings.Repeat("v", svc.MaxValueBytes()+1)},
		{"join", http.MethodPost, "/v1/cluster/join", `{"id":"` + strings.Repeat("n", maxJSONBody) + `"}`},
		{"leave", http.MethodPost, "/v1/cluster/leave", `{"id":"` + strings.Repeat("n", maxJSONBody) + `"}`},
		{"txn", http.MethodPost, "/v1/txn", `{"success":[{"op":"put","key":"a","value":"` + strings.Repeat("x", txnBound) + `"}]}`},
	}
	for _, tc := range cases {
		for _, streamed := range []bool{false, true} {
			name := fmt.Sprintf("%s, streamed=%v", tc.name, streamed)
			var body io.Reader = strings.NewReader(tc.body)
			if streamed {
				body = io.MultiReader(body) // hides the length from httptest.NewRequest
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, body))
			if rec.Code != http.StatusRequestEntityTooLarge || errorCode(t, rec) != "too_large" {
				t.Errorf("%s: %d %s, want 413 too_large", name, rec.Code, rec.Body)
			}
			if len(svc.calls) != 0 {
				t.Fatalf("%s: service was called: %v", name, svc.calls)
			}
		}
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := fmt.Sprintf(`raftkv_http_rejected_total{reason="body_too_large"} %d`, 2*len(cases)); !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("metrics lack %s", want)
	}
}

func TestKeysAreCheckedBeforeAnythingElseOnEveryPath(t *testing.T) {
	long := strings.Repeat("k", cluster.MaxKeyBytes+1)
	txn := func(op string) []byte {
		return []byte(`{"success":[` + op + `]}`)
	}
	cases := []struct {
		name, method, target string
		body                 []byte
	}{
		// A bad key wins over a bad option or an oversize value.
		{"PUT", http.MethodPut, "/v1/kv/" + long + "?timeout=soon", []byte(strings.Repeat("v", 100))},
		{"GET", http.MethodGet, "/v1/kv/" + long + "?consistency=bogus", nil},
		{"HEAD", http.MethodHead, "/v1/kv/%FF", nil},
		{"DELETE", http.MethodDelete, "/v1/kv/", nil},
		{"txn put", http.MethodPost, "/v1/txn", txn(`{"op":"put","key":"` + long + `","value":"v"}`)},
		{"txn get", http.MethodPost, "/v1/txn", txn(`{"op":"get","key":""}`)},
		{"txn compare", http.MethodPost, "/v1/txn", []byte(`{"compare":[{"key":"` + long + `","target":"version","op":"==","version":0}]}`)},
		{"list prefix", http.MethodGet, "/v1/kv?prefix=" + long, nil},
		{"list after", http.MethodGet, "/v1/kv?after=" + long, nil},
	}
	for _, tc := range cases {
		svc := &fakeService{}
		rec := serve(t, svc, tc.method, tc.target, tc.body, nil)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", tc.name, rec.Code, rec.Body)
			continue
		}
		if tc.method != http.MethodHead && !strings.Contains(rec.Body.String(), "key") && !strings.Contains(rec.Body.String(), "longer than any key") {
			t.Errorf("%s: message does not name the key: %s", tc.name, rec.Body)
		}
		if len(svc.calls) != 0 {
			t.Errorf("%s: service was called: %v", tc.name, svc.calls)
		}
	}
}

func TestListLimitAboveTheMaximumIs400(t *testing.T) {
	for _, limit := range []int{MaxListLimit + 1, 1 << 30} {
		rec := serve(t, &fakeService{}, http.MethodGet, fmt.Sprintf("/v1/kv?limit=%d", limit), nil, nil)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), fmt.Sprint(MaxListLimit)) {
			t.Fatalf("limit=%d: %d %s, want 400 naming the maximum", limit, rec.Code, rec.Body)
		}
	}
	svc := &fakeService{}
	if rec := serve(t, svc, http.MethodGet, fmt.Sprintf("/v1/kv?limit=%d", MaxListLimit), nil, nil); rec.Code != http.StatusOK {
		t.Fatalf("limit=%d: %d %s", MaxListLimit, rec.Code, rec.Body)
	}
}

// TestAFloodBeyondTheConcurrencyLimitIsRefusedAtOnce holds every request
// slot with requests parked in the service, then floods the node: each
// extra request is answered 503 with Retry-After: 1 straight away while
// /livez and /metrics still answer, and once the parked requests finish
// the node serves normally again.
func TestAFloodBeyondTheConcurrencyLimitIsRefusedAtOnce(t *testing.T) {
	const slots, flood = 8, 32
	limits := DefaultServerLimits()
	limits.MaxConcurrentRequests = slots
	svc := newHeldService(t)
	ts := startServer(t, New(svc, WithLimits(limits)), limits)

	var parked sync.WaitGroup
	parkedStatus := make(chan int, slots)
	for i := range slots {
		parked.Go(func() {
			resp, _ := get(t, fmt.Sprintf("%s/v1/kv/parked-%d", ts.URL, i))
			parkedStatus <- resp.StatusCode
		})
	}
	for range slots {
		select {
		case <-svc.entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("the %d parked requests did not all reach the service", slots)
		}
	}

	var flooders sync.WaitGroup
	refused := make(chan *http.Response, flood)
	for i := range flood {
		flooders.Go(func() {
			resp, _ := get(t, fmt.Sprintf("%s/v1/kv/flood-%d", ts.URL, i))
			refused <- resp
		})
	}
	flooders.Wait()
	close(refused)
	for resp := range refused {
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("request past the limit: %d Retry-After=%q, want 503 with Retry-After: 1", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if resp, body := get(t, ts.URL+"/livez"); resp.StatusCode != http.StatusOK {
		t.Fatalf("livez during the flood: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, ts.URL+"/readyz"); strings.Contains(body, "max-concurrent-requests") {
		t.Fatalf("readyz was refused by the limit: %d %s", resp.StatusCode, body)
	}
	resp, body := get(t, ts.URL+"/metrics")
	if want := fmt.Sprintf(`raftkv_http_rejected_total{reason="max_concurrent_requests"} %d`, flood); resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
		t.Fatalf("metrics during the flood: %d, lacking %s", resp.StatusCode, want)
	}

	close(svc.release)
	parked.Wait()
	close(parkedStatus)
	for code := range parkedStatus {
		if code != http.StatusOK {
			t.Fatalf("a parked request ended with %d", code)
		}
	}
	if resp, body := get(t, ts.URL+"/v1/kv/after-the-flood"); resp.StatusCode != http.StatusOK {
		t.Fatalf("request after the flood: %d %s", resp.StatusCode, body)
	}
}

// TestSlowLorisIsCutAtReadHeaderTimeout dribbles a request's headers one
// byte at a time: the server hangs up once ReadHeaderTimeout has passed,
// long before the client would have finished.
func TestSlowLorisIsCutAtReadHeaderTimeout(t *testing.T) {
	limits := DefaultServerLimits()
	limits.ReadHeaderTimeout = 300 * time.Millisecond
	ts := startServer(t, New(&fakeService{}), limits)
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	var sent atomic.Int32 // header bytes the server took before it hung up
	go func() {
		header := "GET /livez HTTP/1.1\r\nHost: raftkv\r\nX-Slow: " + strings.Repeat("s", 10000)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := range len(header) {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{header[i]}); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	// net/http may answer 400 or 408 before it hangs up; either way the
	// connection must end.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	answer, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("slow-loris connection still open after %s", time.Since(start))
	}
	if a := string(answer); a != "" && !strings.HasPrefix(a, "HTTP/1.1 400") && !strings.HasPrefix(a, "HTTP/1.1 408") {
		t.Fatalf("slow-loris got an answer other than 400 or 408: %q", answer)
	}
	// The server let the header trickle in for a while (it did not refuse
	// the connection outright) and then cut it: the timeout did it.
	if n := sent.Load(); n < 2 {
		t.Fatalf("connection closed after %d header bytes: it was not waited on", n)
	}
	if resp, _ := get(t, ts.URL+"/livez"); resp.StatusCode != http.StatusOK {
		t.Fatalf("a prompt client after the slow one: %d", resp.StatusCode)
	}
}

// TestLongRequestsOutliveReadTimeout runs requests that take three times
// ReadTimeout, with and without a body: the read deadline, which net/http
// turns into a cancelled request context, must not end them.
func TestLongRequestsOutliveReadTimeout(t *testing.T) {
	limits := DefaultServerLimits()
	limits.ReadTimeout = 200 * time.Millisecond
	svc := newHeldService(t)
	svc.hold = 3 * limits.ReadTimeout
	ts := startServer(t, New(svc, WithLimits(limits)), limits)

	if resp, body := get(t, ts.URL+"/v1/kv/slow"); resp.StatusCode != http.StatusOK || body != "v" {
		t.Fatalf("GET held for %s: %d %s", svc.hold, resp.StatusCode, body)
	}
	txn := `{"success":[{"op":"get","key":"slow"}]}`
	resp, err := http.Post(ts.URL+"/v1/txn", "application/json", strings.NewReader(txn))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("txn held for %s: %d %s", svc.hold, resp.StatusCode, body)
	}
}

// TestABackupOutlivesWriteTimeout stages a backup for three times
// WriteTimeout: the archive must still arrive whole, since a download's
// write deadline moves with every write.
func TestABackupOutlivesWriteTimeout(t *testing.T) {
	limits := DefaultServerLimits()
	limits.ReadTimeout, limits.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	svc := newHeldService(t)
	svc.hold = 3 * limits.WriteTimeout
	ts := startServer(t, New(svc, WithLimits(limits)), limits)

	resp, err := http.Get(ts.URL + "/v1/backup")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("backup held for %s: %d", svc.hold, resp.StatusCode)
	}
	m, err := backup.Walk(resp.Body, func(backup.GroupRecord, io.Reader) error { return nil })
	if err != nil || len(m.Groups) != 1 {
		t.Fatalf("backup held for %s arrived cut or damaged: %v (manifest %+v)", svc.hold, err, m)
	}
}

func TestBackupsPastTheLimitAre429AndCounted(t *testing.T) {
	s := New(&overloadedBackups{fakeService: &fakeService{}})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/backup", nil))
	if rec.Code != http.StatusTooManyRequests || errorCode(t, rec) != "overloaded" || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("backup refused by the node: %d Retry-After=%q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `raftkv_http_rejected_total{reason="max_concurrent_backups"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("metrics lack %s", want)
	}
}

// overloadedBackups answers every backup as a node at its backup limit does.
type overloadedBackups struct{ *fakeService }

func (overloadedBackups) PrepareBackup(context.Context) (*backup.Writer, error) {
	return nil, fmt.Errorf("%w: 2 backups are already being staged", cluster.ErrOverloaded)
}
