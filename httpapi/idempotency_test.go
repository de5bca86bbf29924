package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestABadIdempotencyKeyIsA400AndNothingIsCalled: keys outside the rules,
// or two of them, are refused before the node is asked anything.
func TestABadIdempotencyKeyIsA400AndNothingIsCalled(t *testing.T) {
	for name, key := range map[string]string{
		"empty": "", "space": "a b", "too long": strings.Repeat("k", 256), "not ASCII": "clé",
	} {
		for _, req := range []struct{ method, target, body string }{
			{"PUT", "/v1/kv/k", "v"}, {"DELETE", "/v1/kv/k", ""},
			{"POST", "/v1/txn", `{"success":[{"op":"put","key":"a","value":"1"}]}`},
		} {
			f := &fakeService{}
			rec := serve(t, f, req.method, req.target, []byte(req.body), map[string]string{"Idempotency-Key": key})
			if rec.Code != 400 || errorCode(t, rec) != "bad_request" || len(f.calls) != 0 {
				t.Errorf("%s key on %s %s: %d %s, calls %v; want 400 bad_request and no call", name, req.method, req.target, rec.Code, rec.Body, f.calls)
			}
		}
	}
	f := &fakeService{}
	req := httptestRequest("PUT", "/v1/kv/k", "v")
	req.Header.Add("Idempotency-Key", "one")
	req.Header.Add("Idempotency-Key", "two")
	if rec := serveRequest(f, req); rec.Code != 400 || len(f.calls) != 0 {
		t.Errorf("two keys: %d %s, calls %v", rec.Code, rec.Body, f.calls)
	}
}

func httptestRequest(method, target, body string) *http.Request {
	return httptest.NewRequest(method, target, strings.NewReader(body))
}

func serveRequest(svc Service, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	New(svc).ServeHTTP(rec, req)
	return rec
}
