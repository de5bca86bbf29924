package client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkPut is the client's own cost of one put, against a server that
// answers every request as a node answers a put (its cost is in the
// figures too: compare with BenchmarkPutBareHTTP, the same exchange through
// net/http alone).
func BenchmarkPut(b *testing.B) {
	srv := putAnswerer()
	defer srv.Close()
	c := New([]string{srv.URL}, WithTimeout(10*time.Second), WithIdempotentRetry(0))
	value := bytes.Repeat([]byte("x"), 100)
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Put(context.Background(), "bench/00000001", value)
		if err != nil {
			b.Fatal(err)
		}
		if res.Revision != 12345 {
			b.Fatalf("revision %d, want 12345", res.Revision)
		}
	}
}

func BenchmarkPutBareHTTP(b *testing.B) {
	srv := putAnswerer()
	defer srv.Close()
	hc := newHTTPClient(time.Second, nil)
	value := bytes.Repeat([]byte("x"), 100)
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL+"/v1/kv/bench%2F00000001", bytes.NewReader(value))
		if err != nil {
			b.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		cancel()
	}
}

// putAnswerer answers every request as a node answers a put.
func putAnswerer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Etag"] = []string{`"12345"`}
		h["X-Raftkv-Node"] = []string{"n1"}
		h["Content-Type"] = []string{"application/json"}
		_, _ = w.Write([]byte(`{"key":"bench/00000001","revision":12345,"version":3,"shard":"shard-1"}` + "\n"))
	}))
}
