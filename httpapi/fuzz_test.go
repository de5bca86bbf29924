package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/fsm"
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

// FuzzTxnJSON decodes arbitrary POST /v1/txn bodies. Whatever toRequest
// accepts must hold only defined compare targets, operators and op kinds,
// so that the node's encoder, which panics on anything else, never sees
// an undefined one.
func FuzzTxnJSON(f *testing.F) {
	f.Add([]byte(`{"compare":[{"key":"a","target":"value","op":"==","value":"1"}],"success":[{"op":"put","key":"a","value":"2"}]}`))
	f.Add([]byte(`{"compare":[{"key":"a","target":"version","op":"<","version":3},{"key":"b","target":"revision","op":"!=","revision":0}]}`))
	f.Add([]byte(`{"success":[{"op":"put","key":"a","value_base64":"AAE="},{"op":"delete","key":"b"}],"failure":[{"op":"get","key":"c"}]}`))
	f.Add([]byte(`{"success":[{"op":"get","key":"a","value":"x"}]}`))
	f.Add([]byte(`{"compare":[{"key":"a","target":"value","op":"==","value":"1","value_base64":"AA=="}]}`))
	f.Add([]byte(`{"compare":[{"target":"version","op":">"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var in txnRequestJSON
		if json.Unmarshal(body, &in) != nil {
			return
		}
		req, err := in.toRequest()
		if err != nil {
			return
		}
		txn := fsm.Txn{Compares: req.Compares, Success: req.Success, Failure: req.Failure}
		if len(txn.Compares) != len(in.Compare) || len(txn.Success) != len(in.Success) || len(txn.Failure) != len(in.Failure) {
			t.Fatalf("toRequest dropped parts of %s", body)
		}
		b := fsm.EncodeTxn(fsm.CommandTxn, fsm.TxnCmd{Body: txn}) // panics on an undefined enumeration
		if c, err := fsm.Decode(b); err != nil || c.Txn == nil {
			t.Fatalf("accepted transaction does not decode: %v", err)
		}
	})
}

// FuzzKeyPath sends a PUT and a GET to /v1/kv/ followed by an arbitrary
// escaped path. A path that unescapes reaches the service as exactly that
// key; one that does not is a JSON 400. Neither panics.
func FuzzKeyPath(f *testing.F) {
	for _, seed := range []string{"a", "a%2Fb", "dir/sub/key", "%zz", "%", "%00", "%E2%82%AC", "%ff%fe", "", "a%20b?x=1"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, escaped string) {
		if strings.ContainsAny(escaped, "?#") {
			return // a query or fragment, not part of the key
		}
		req, err := newRequestSafely(http.MethodPut, "/v1/kv/"+escaped, []byte("v"))
		if err != nil || req.URL.EscapedPath() != "/v1/kv/"+escaped {
			return // the client library would not send this path as is
		}
		svc := &fakeService{}
		rec := httptest.NewRecorder()
		New(svc).ServeHTTP(rec, req)
		key, uerr := url.PathUnescape(escaped)
		switch {
		case uerr != nil:
			if rec.Code != http.StatusBadRequest || len(svc.calls) != 0 {
				t.Fatalf("unescapable %q: status %d, calls %v", escaped, rec.Code, svc.calls)
			}
		case len(svc.calls) == 1:
			if want := "put " + key + " v "; !strings.HasPrefix(svc.calls[0], want) {
				t.Fatalf("%q reached the service as %q, want key %q", escaped, svc.calls[0], key)
			}
		case rec.Code < 400:
			t.Fatalf("%q: status %d without a call to the service", escaped, rec.Code)
		}
		greq, err := newRequestSafely(http.MethodGet, "/v1/kv/"+escaped, nil)
		if err != nil {
			return
		}
		rec = httptest.NewRecorder()
		New(&fakeService{}).ServeHTTP(rec, greq)
		if rec.Code >= 400 {
			var e struct{ Error struct{ Code string } }
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error.Code == "" {
				t.Fatalf("GET %q -> %d without a JSON error body", escaped, rec.Code)
			}
		}
	})
}
