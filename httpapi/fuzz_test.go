package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

type httpRequest = http.Request

var errBadTarget = errors.New("unparsable target")

// FuzzRequests sends arbitrary bodies, keys and headers to every decoding
// endpoint: the answer is always a status with a JSON error body or a
// success, never a panic.
func FuzzRequests(f *testing.F) {
	f.Add("POST", "/v1/txn", []byte(`{"compare":[{"key":"a","target":"value","op":"==","value":"1"}],"success":[{"op":"put","key":"a","value":"2"}]}`), "")
	f.Add("POST", "/v1/txn", []byte(`{"success":[{"op":"put","key":"a","value_base64":"AAE="},{"op":"delete","key":"b"}]}`), "")
	f.Add("POST", "/v1/cluster/join", []byte(`{"id":"n2","raft_addr":"127.0.0.1:7001","http_addr":"127.0.0.1:8081"}`), "")
	f.Add("POST", "/v1/cluster/leave", []byte(`{"id":"n2"}`), "")
	f.Add("POST", "/v1/cluster/transfer-leadership", []byte(`{"group":"shard-1","to":"n2"}`), "")
	f.Add("PUT", "/v1/kv/a%2Fb", []byte("value"), `"3"`)
	f.Add("GET", "/v1/kv?prefix=a&limit=5&after=a1", []byte(nil), "")
	f.Fuzz(func(t *testing.T, method, target string, body []byte, ifMatch string) {
		if len(target) == 0 || target[0] != '/' {
			return
		}
		req, err := newRequestSafely(method, target, body)
		if err != nil {
			return
		}
		req.Header.Set("If-Match", ifMatch)
		rec := httptest.NewRecorder()
		New(&fakeService{}).ServeHTTP(rec, req)
		if rec.Code >= 400 {
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" {
				t.Fatalf("%s %s -> %d without a JSON error body: %q", method, target, rec.Code, rec.Body.String())
			}
		}
	})
}

// newRequestSafely builds a request, turning httptest's panic on a target
// it cannot parse into an error.
func newRequestSafely(method, target string, body []byte) (req *httpRequest, err error) {
	defer func() {
		if recover() != nil {
			req, err = nil, errBadTarget
		}
	}()
	return httptest.NewRequest(method, target, bytes.NewReader(body)), nil
}
