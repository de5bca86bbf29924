package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/registry"
)

// fakeService records calls and returns canned answers.
type fakeService struct {
	noAuth
	calls  []string
	putErr error
	kv     fsm.KV
	// leader and leaderAddr are what LeaderHint answers.
	leader, leaderAddr string
}

func (f *fakeService) ID() string         { return "fake1" }
func (f *fakeService) MaxValueBytes() int { return 16 }
func (f *fakeService) Put(_ context.Context, key string, value []byte, cond fsm.Condition) (cluster.KVResult, error) {
	f.calls = append(f.calls, fmt.Sprintf("put %s %s %v", key, value, cond))
	return cluster.KVResult{KV: fsm.KV{Key: key, Value: value, ModRevision: 7, Version: 1}, Shard: "shard-1", Node: "fake2"}, f.putErr
}
func (f *fakeService) Get(_ context.Context, key string, c cluster.Consistency) (cluster.KVResult, error) {
	f.calls = append(f.calls, "get "+key)
	if f.kv.Key != key {
		return cluster.KVResult{}, fmt.Errorf("%w: %s", cluster.ErrNotFound, key)
	}
	return cluster.KVResult{KV: f.kv, Found: true, Shard: "shard-1"}, nil
}
func (f *fakeService) DeletePrefix(_ context.Context, prefix string) (int, error) {
	f.calls = append(f.calls, "delete-prefix "+prefix)
	return 3, nil
}
func (f *fakeService) Count(_ context.Context, prefix string, _ cluster.Consistency) (int, error) {
	f.calls = append(f.calls, "count "+prefix)
	return 2, nil
}
func (f *fakeService) Events() (<-chan cluster.Event, func()) {
	ch := make(chan cluster.Event, 1)
	ch <- cluster.Event{Type: cluster.EventLeader, Node: "fake1", Group: "meta", Leader: "fake1"}
	close(ch)
	return ch, func() {}
}
func (f *fakeService) WaitApplied(_ context.Context, key string, index uint64) error {
	f.calls = append(f.calls, fmt.Sprintf("wait %s %d", key, index))
	return nil
}
func (f *fakeService) Delete(_ context.Context, key string, cond fsm.Condition) (cluster.KVResult, error) {
	f.calls = append(f.calls, "delete "+key)
	return cluster.KVResult{Deleted: true}, nil
}
func (f *fakeService) List(_ context.Context, prefix, after string, limit int, c cluster.Consistency) (cluster.ListResult, error) {
	f.calls = append(f.calls, fmt.Sprintf("list %s %s %d", prefix, after, limit))
	return cluster.ListResult{Items: []fsm.KV{{Key: "a", Value: []byte("text")}, {Key: "b", Value: []byte{0xff, 0x00}}}}, nil
}
func (f *fakeService) LeaderHint(string) (string, string)          { return f.leader, f.leaderAddr }
func (f *fakeService) Status() cluster.Status                      { return cluster.Status{Node: "fake1"} }
func (f *fakeService) ProbedStatus(context.Context) cluster.Status { return f.Status() }
func (f *fakeService) Overview(context.Context) cluster.Overview {
	st := f.Status()
	return cluster.Overview{Node: st.Node, Nodes: []cluster.NodeOverview{{ID: st.Node, Reachable: true, Status: &st}}}
}
func (f *fakeService) Ready() (bool, string) { return false, "meta has no leader" }
func (f *fakeService) Join(context.Context, registry.Node) error {
	f.calls = append(f.calls, "join")
	return nil
}
func (f *fakeService) Leave(_ context.Context, id string) error {
	f.calls = append(f.calls, "leave "+id)
	return fmt.Errorf("%w: no node %q", cluster.ErrNotFound, id)
}
func (f *fakeService) TransferLeadership(context.Context, string, string) (cluster.TransferResult, error) {
	return cluster.TransferResult{}, nil
}
func (f *fakeService) InternalHandler() http.Handler { return http.NotFoundHandler() }
func (f *fakeService) PrepareBackup(context.Context) (*backup.Writer, error) {
	return nil, cluster.ErrUnavailable
}
func (f *fakeService) Checkpoint() ([]cluster.CheckpointInfo, error) {
	return nil, nil
}
func (f *fakeService) Txn(_ context.Context, req cluster.TxnRequest) (cluster.TxnResponse, error) {
	return fakeTxn(f, req)
}
func (f *fakeService) TxnRecord(_ context.Context, id string) (fsm.Record, error) {
	return fakeTxnRecord(f, id)
}

func serve(t *testing.T, svc Service, method, target string, body []byte, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	New(svc).ServeHTTP(rec, req)
	return rec
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Message == "" {
		t.Fatalf("error body is not {\"error\":{code,message}}: %q", rec.Body.String())
	}
	return body.Error.Code
}

func TestBadInputGetsTheDocumentedErrorAndNothingIsCalled(t *testing.T) {
	long := strings.Repeat("k", cluster.MaxKeyBytes+1)
	cases := []struct {
		name, method, target string
		body                 []byte
		header               map[string]string
		status               int
		code                 string
	}{
		{"malformed join JSON", "POST", "/v1/cluster/join", []byte(`{"id":`), nil, 400, "bad_request"},
		{"unknown join field", "POST", "/v1/cluster/join", []byte(`{"idd":"x"}`), nil, 400, "bad_request"},
		{"leave without id", "POST", "/v1/cluster/leave", []byte(`{}`), nil, 400, "bad_request"},
		{"transfer without group", "POST", "/v1/cluster/transfer-leadership", []byte(`{}`), nil, 400, "bad_request"},
		{"oversize value", "PUT", "/v1/kv/k", bytes.Repeat([]byte("v"), 17), nil, 413, "too_large"},
		{"key too long", "PUT", "/v1/kv/" + long, []byte("v"), nil, 400, "bad_request"},
		{"key not UTF-8", "PUT", "/v1/kv/%FF%FE", []byte("v"), nil, 400, "bad_request"},
		{"empty key", "PUT", "/v1/kv/", []byte("v"), nil, 400, "bad_request"},
		{"bad If-Match", "PUT", "/v1/kv/k", []byte("v"), map[string]string{"If-Match": "abc"}, 400, "bad_request"},
		{"bad If-None-Match", "PUT", "/v1/kv/k", []byte("v"), map[string]string{"If-None-Match": `"3"`}, 400, "bad_request"},
		{"both conditions", "PUT", "/v1/kv/k", []byte("v"), map[string]string{"If-Match": `"3"`, "If-None-Match": "*"}, 400, "bad_request"},
		{"bad timeout", "PUT", "/v1/kv/k?timeout=soon", []byte("v"), nil, 400, "bad_request"},
		{"bad consistency", "GET", "/v1/kv/k?consistency=eventual", nil, nil, 400, "bad_request"},
		{"list limit too big", "GET", "/v1/kv?limit=10001", nil, nil, 400, "bad_request"},
		{"list limit zero", "GET", "/v1/kv?limit=0", nil, nil, 400, "bad_request"},
		{"unknown path", "GET", "/v2/nothing", nil, nil, 404, "not_found"},
		{"wrong method", "POST", "/v1/kv/k", nil, nil, 405, "method_not_allowed"},
		{"wrong method on cluster", "DELETE", "/v1/cluster", nil, nil, 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeService{}
			rec := serve(t, svc, tc.method, tc.target, tc.body, tc.header)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if code := errorCode(t, rec); code != tc.code {
				t.Fatalf("code %q, want %q", code, tc.code)
			}
			if len(svc.calls) != 0 {
				t.Fatalf("service was called: %v", svc.calls)
			}
		})
	}
}

func TestTypedErrorsMapToStatusCodes(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{cluster.ErrPrecondition, 412, "precondition_failed"},
		{&cluster.PreconditionError{Found: true}, 412, "precondition_failed"},
		{cluster.ErrUnavailable, 503, "unavailable"},
		{cluster.ErrTimeout, 504, "timeout"},
		{cluster.ErrIndeterminate, 504, "timeout"},
		{cluster.ErrConflict, 409, "conflict"},
		{fmt.Errorf("wrapped: %w", cluster.ErrNotFound), 404, "not_found"},
		{fmt.Errorf("disk on fire"), 500, "internal"},
		{cluster.ErrBadRequest, 400, "bad_request"},
		{cluster.ErrTooLarge, 413, "too_large"},
		{cluster.ErrOverloaded, 429, "overloaded"},
		{fmt.Errorf("leave: %w", registry.ErrUnknownNode), 404, "not_found"},
	}
	for _, tc := range cases {
		svc := &fakeService{putErr: tc.err}
		rec := serve(t, svc, "PUT", "/v1/kv/k", []byte("v"), nil)
		if rec.Code != tc.status || errorCode(t, rec) != tc.code {
			t.Fatalf("%v: got %d %s", tc.err, rec.Code, rec.Body)
		}
		if retry := tc.status == 503 || tc.status == 429; retry != (rec.Header().Get("Retry-After") != "") {
			t.Fatalf("%v: %d with Retry-After %q", tc.err, tc.status, rec.Header().Get("Retry-After"))
		}
	}
}

func TestPutAnswersWithRevisionETagAndServingNode(t *testing.T) {
	svc := &fakeService{}
	rec := serve(t, svc, "PUT", "/v1/kv/a%2Fb%20c?timeout=2s", []byte("hello"), map[string]string{"If-Match": `"5"`})
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if svc.calls[0] != "put a/b c hello {1 5}" {
		t.Fatalf("call %q", svc.calls[0])
	}
	if rec.Header().Get("ETag") != `"7"` || rec.Header().Get("X-Raftkv-Node") != "fake2" || rec.Header().Get("X-Raftkv-Shard") != "shard-1" {
		t.Fatalf("headers %v", rec.Header())
	}
	var body map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if body["key"] != "a/b c" || body["revision"] != float64(7) || body["version"] != float64(1) || body["shard"] != "shard-1" {
		t.Fatalf("body %v", body)
	}
}

// TestAPutStoresExactlyTheBodySent: a value is the body as sent, whether
// its length is declared or not (chunked), up to the limit; a body shorter
// than its declared length is refused and nothing is written.
func TestAPutStoresExactlyTheBodySent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		length int64 // Content-Length; -1: unknown, as a chunked body
	}{
		{"declared", "hello", 5},
		{"declared empty", "", 0},
		{"declared at the limit", strings.Repeat("v", 16), 16},
		{"chunked", "hello", -1},
		{"chunked at the limit", strings.Repeat("v", 16), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeService{}
			req := httptest.NewRequest("PUT", "/v1/kv/k", strings.NewReader(tc.body))
			req.ContentLength = tc.length
			rec := httptest.NewRecorder()
			New(svc).ServeHTTP(rec, req)
			if rec.Code != 200 || len(svc.calls) != 1 || svc.calls[0] != "put k "+tc.body+" {0 0}" {
				t.Fatalf("status %d, calls %q: %s", rec.Code, svc.calls, rec.Body)
			}
		})
	}
	svc := &fakeService{}
	req := httptest.NewRequest("PUT", "/v1/kv/k", strings.NewReader("abc"))
	req.ContentLength = 10 // the client promised more than it sent
	rec := httptest.NewRecorder()
	New(svc).ServeHTTP(rec, req)
	if rec.Code != 400 || errorCode(t, rec) != "bad_request" || len(svc.calls) != 0 {
		t.Fatalf("short body: status %d, calls %q: %s", rec.Code, svc.calls, rec.Body)
	}
}

func TestListReturnsNonUTF8ValuesAsBase64(t *testing.T) {
	rec := serve(t, &fakeService{}, "GET", "/v1/kv?prefix=", nil, nil)
	want := `{"items":[{"key":"a","value":"text","version":0,"revision":0,"create_revision":0},{"key":"b","value_base64":"/wA=","version":0,"revision":0,"create_revision":0}],"more":false}`
	if strings.TrimSpace(rec.Body.String()) != want {
		t.Fatalf("got %s", rec.Body)
	}
}

func TestReadyzIs503UntilReady(t *testing.T) {
	rec := serve(t, &fakeService{}, "GET", "/readyz", nil, nil)
	if rec.Code != 503 || errorCode(t, rec) != "unavailable" {
		t.Fatalf("readyz: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(t, &fakeService{}, "GET", "/livez", nil, nil); rec.Code != 200 {
		t.Fatalf("livez %d", rec.Code)
	}
}

func TestMetricsExposeRequestCounters(t *testing.T) {
	s := New(&fakeService{})
	s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("PUT", "/v1/kv/k", strings.NewReader("v")))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `raftkv_http_requests_total{code="200",method="PUT",route="/v1/kv/{key}"} 1`) {
		t.Fatalf("metrics lack the request counter:\n%s", rec.Body)
	}
}

// noAuth is a node with auth off: it never asks for a token.
type noAuth struct{}

var errAuthOff = fmt.Errorf("%w: auth is off", cluster.ErrBadRequest)

func (noAuth) AuthEnabled() bool                                { return false }
func (noAuth) Authenticate(string) (string, error)              { return "", errAuthOff }
func (noAuth) RequireAdmin(context.Context) error               { return nil }
func (noAuth) RevokeToken(context.Context, string) error        { return errAuthOff }
func (noAuth) PutRole(context.Context, registry.Role) error     { return errAuthOff }
func (noAuth) DeleteRole(context.Context, string) error         { return errAuthOff }
func (noAuth) Tokens(context.Context) ([]registry.Token, error) { return nil, errAuthOff }
func (noAuth) Roles(context.Context) ([]registry.Role, error)   { return nil, errAuthOff }
func (noAuth) Role(context.Context, string) (registry.Role, error) {
	return registry.Role{}, errAuthOff
}
func (noAuth) CreateToken(context.Context, cluster.TokenRequest) (cluster.NewToken, error) {
	return cluster.NewToken{}, errAuthOff
}

func TestKeyAnswersCarryALeaderHintOnlyWhenTheLeaderWasOutOfReach(t *testing.T) {
	cases := []struct {
		err          error
		leader, addr string
		wantHint     bool
	}{
		{fmt.Errorf("%w: no leader of shard-1 reachable before the deadline", cluster.ErrUnavailable), "node3", "10.0.0.3:8080", true},
		{cluster.ErrIndeterminate, "node3", "10.0.0.3:8080", true},
		{cluster.ErrTimeout, "node3", "", true},
		// Answers the leader itself decided, or that came before routing.
		{cluster.ErrPrecondition, "node3", "10.0.0.3:8080", false},
		{cluster.ErrOverloaded, "node3", "10.0.0.3:8080", false},
		{cluster.ErrConflict, "node3", "10.0.0.3:8080", false},
		// Nothing useful to say: no leader known, or this node itself.
		{cluster.ErrUnavailable, "", "", false},
		{cluster.ErrUnavailable, "fake1", "127.0.0.1:1", false},
	}
	for _, tc := range cases {
		svc := &fakeService{putErr: tc.err, leader: tc.leader, leaderAddr: tc.addr}
		rec := serve(t, svc, "PUT", "/v1/kv/k", []byte("v"), nil)
		gotID, gotAddr := rec.Header().Get("X-Raftkv-Leader"), rec.Header().Get("X-Raftkv-Leader-Addr")
		if !tc.wantHint {
			if gotID != "" || gotAddr != "" {
				t.Errorf("%v with leader %q: hint %q %q, want none", tc.err, tc.leader, gotID, gotAddr)
			}
			continue
		}
		if gotID != tc.leader || gotAddr != tc.addr || rec.Header().Get("X-Raftkv-Shard") != "shard-1" {
			t.Errorf("%v: headers %v, want leader %q at %q for shard-1", tc.err, rec.Header(), tc.leader, tc.addr)
		}
	}
}
