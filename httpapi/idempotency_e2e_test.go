package httpapi_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raftkvtest"
)

type answer struct {
	status int
	header http.Header
	body   string
}

func send(t *testing.T, method, url, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(bytes.TrimSpace(b))}
}

// TestIdempotencyKeyHeaderOverHTTP: a PUT, a DELETE and a transaction sent
// twice with one Idempotency-Key through different nodes apply once; the
// second answer is the first one (status, body, ETag, index headers),
// marked Idempotent-Replayed, and the key is echoed on both. The same key
// on a different request is 422 idempotency_key_reused.
func TestIdempotencyKeyHeaderOverHTTP(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	url := func(i int, path string) string { return "http://" + c.Nodes[i].HTTPAddr + path }

	first := send(t, "PUT", url(0, "/v1/kv/greeting"), "hello", "Idempotency-Key", "put-1")
	send(t, "PUT", url(1, "/v1/kv/greeting"), "changed") // an unkeyed write in between
	retry := send(t, "PUT", url(2, "/v1/kv/greeting"), "hello", "Idempotency-Key", "put-1")
	if first.status != 200 || retry.status != 200 || retry.body != first.body {
		t.Fatalf("put: first %d %s, retry %d %s; want the same 200 answer", first.status, first.body, retry.status, retry.body)
	}
	for _, h := range []string{"ETag", "X-Raftkv-Index", "X-Raftkv-Term", "X-Raftkv-Shard"} {
		if retry.header.Get(h) != first.header.Get(h) {
			t.Errorf("%s: first %q, retry %q", h, first.header.Get(h), retry.header.Get(h))
		}
	}
	if first.header.Get("Idempotency-Key") != "put-1" || retry.header.Get("Idempotency-Key") != "put-1" {
		t.Errorf("the key is not echoed: %q, %q", first.header.Get("Idempotency-Key"), retry.header.Get("Idempotency-Key"))
	}
	if first.header.Get("Idempotent-Replayed") != "" || retry.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed: first %q, retry %q", first.header.Get("Idempotent-Replayed"), retry.header.Get("Idempotent-Replayed"))
	}
	if got := send(t, "GET", url(0, "/v1/kv/greeting"), ""); got.body != "changed" {
		t.Fatalf("greeting = %q, want changed: the retry must not write again", got.body)
	}

	reused := send(t, "PUT", url(1, "/v1/kv/greeting"), "other value", "Idempotency-Key", "put-1")
	if reused.status != 422 || !strings.Contains(reused.body, `"idempotency_key_reused"`) {
		t.Fatalf("the key on another request: %d %s, want 422 idempotency_key_reused", reused.status, reused.body)
	}

	del1 := send(t, "DELETE", url(0, "/v1/kv/greeting"), "", "Idempotency-Key", "del-1")
	del2 := send(t, "DELETE", url(1, "/v1/kv/greeting"), "", "Idempotency-Key", "del-1")
	if del1.body != `{"deleted":true}` || del2.body != del1.body || del2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("delete: %s then %s (%q), want deleted:true twice, the second replayed", del1.body, del2.body, del2.header.Get("Idempotent-Replayed"))
	}

	txn := `{"success":[{"op":"put","key":"a","value":"1"},{"op":"put","key":"b","value":"2"},{"op":"get","key":"a"}]}`
	t1 := send(t, "POST", url(0, "/v1/txn"), txn, "Idempotency-Key", "txn-1")
	t2 := send(t, "POST", url(2, "/v1/txn"), txn, "Idempotency-Key", "txn-1")
	if t1.status != 200 || t2.body != t1.body || t2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("txn: %d %s then %d %s, want the same answer, replayed", t1.status, t1.body, t2.status, t2.body)
	}
}
