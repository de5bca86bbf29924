package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/cluster"
)

// watchFake is a service whose waits record they were reached and return
// at once.
type watchFake struct {
	fakeService
	waits int
}

func (f *watchFake) WaitKeyChange(context.Context, string, uint64) error { f.waits++; return nil }
func (f *watchFake) WaitPrefixChange(context.Context, string, map[string]uint64) error {
	f.waits++
	return nil
}
func (f *watchFake) Watch(context.Context, string, cluster.Cursor) (*cluster.Watcher, error) {
	return nil, cluster.ErrUnavailable
}
func (f *watchFake) ParseCursor(s string) (cluster.Cursor, error) { return cluster.ParseCursor(s, 2) }

// TestWatchCapsAnswer429: past MaxWaiters blocking queries, or
// MaxWatchStreams streams, a node answers 429 overloaded with
// Retry-After, and does not start the wait.
func TestWatchCapsAnswer429(t *testing.T) {
	svc := &watchFake{}
	s := New(svc)
	do := func(target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		return rec
	}
	if rec := do("/v1/kv/a?index=3&wait=1s"); rec.Code == http.StatusTooManyRequests || svc.waits != 1 {
		t.Fatalf("below the cap: %d %s, %d waits", rec.Code, rec.Body, svc.waits)
	}
	s.waiters.Store(MaxWaiters)
	for _, target := range []string{"/v1/kv/a?index=3&wait=1s", "/v1/kv?prefix=a&index=1:3,2:4"} {
		rec := do(target)
		if rec.Code != http.StatusTooManyRequests || errorCode(t, rec) != "overloaded" || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s past the waiter cap: %d %s", target, rec.Code, rec.Body)
		}
	}
	if svc.waits != 1 {
		t.Errorf("a refused query waited: %d waits", svc.waits)
	}
	s.watchStreams.Store(MaxWatchStreams)
	if rec := do("/v1/watch?prefix=a"); rec.Code != http.StatusTooManyRequests || errorCode(t, rec) != "overloaded" {
		t.Errorf("past the stream cap: %d %s", rec.Code, rec.Body)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{`raftkv_http_rejected_total{reason="max_waiters"} 2`, `raftkv_http_rejected_total{reason="max_watch_streams"} 1`,
		`raftkv_watch_waiters 1024`, `raftkv_watch_streams 256`, `route="/v1/kv/{key} (blocking)"`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A service without watches says so.
	if rec := serve(t, &fakeService{}, http.MethodGet, "/v1/watch", nil, nil); rec.Code != http.StatusNotFound {
		t.Errorf("no watch service: %d %s", rec.Code, rec.Body)
	}
}
