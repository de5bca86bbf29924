package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
)

// fakeTxn answers a transaction by echoing the success branch: gets find
// nothing, puts return their value at revision 9.
func fakeTxn(f *fakeService, req cluster.TxnRequest) (cluster.TxnResponse, error) {
	f.calls = append(f.calls, fmt.Sprintf("txn %d/%d/%d", len(req.Compares), len(req.Success), len(req.Failure)))
	if len(req.Compares) > 0 && req.Compares[0].Key == "locked" {
		return cluster.TxnResponse{}, fmt.Errorf("%w: locked", cluster.ErrConflict)
	}
	out := cluster.TxnResponse{Succeeded: true, ID: "shard-1.ab", Mode: cluster.Mode2PC, Shards: []string{"shard-1", "shard-2"}}
	for _, o := range req.Success {
		r := cluster.TxnOpResult{Op: o.Kind, Key: o.Key}
		if o.Kind == fsm.OpPut {
			r.KV = fsm.KV{Key: o.Key, Value: o.Value, ModRevision: 9, Version: 1}
		}
		out.Results = append(out.Results, r)
	}
	return out, nil
}

func fakeTxnRecord(f *fakeService, id string) (fsm.Record, error) {
	if id != "shard-1.ab" {
		return fsm.Record{}, fmt.Errorf("%w: %s", cluster.ErrNotFound, id)
	}
	return fsm.Record{ID: id, State: fsm.StateCommitted, Succeeded: true, Participants: []string{"shard-1", "shard-2"}, StartedAt: 1, DecidedAt: 2}, nil
}

func TestTxnHandler(t *testing.T) {
	f := &fakeService{}
	body := `{"compare":[{"key":"a","target":"value","op":"==","value":"10"},{"key":"b","target":"version","op":">","version":0}],
	  "success":[{"op":"put","key":"a","value":"5"},{"op":"put","key":"bin","value_base64":"/wA="},{"op":"get","key":"c"}],
	  "failure":[{"op":"get","key":"a"}]}`
	rec := serve(t, f, http.MethodPost, "/v1/txn", []byte(body), nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out txnResponseJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if !out.Succeeded || len(out.Results) != 3 || out.Txn.Mode != "2pc" || out.Txn.ID != "shard-1.ab" {
		t.Fatalf("response %+v", out)
	}
	if r := out.Results[0]; r.Op != "put" || r.Value == nil || *r.Value != "5" || r.Revision != 9 {
		t.Fatalf("put result %+v", r)
	}
	if r := out.Results[1]; r.ValueBase64 != "/wA=" {
		t.Fatalf("binary put result %+v", r)
	}
	if r := out.Results[2]; r.Op != "get" || r.Found || r.Value != nil {
		t.Fatalf("get result %+v", r)
	}

	bad := map[string]string{
		"unknown field":   `{"compares":[]}`,
		"bad op":          `{"success":[{"op":"incr","key":"a"}]}`,
		"bad compare op":  `{"compare":[{"key":"a","target":"value","op":"~","value":"x"}]}`,
		"missing version": `{"compare":[{"key":"a","target":"version","op":"=="}]}`,
		"put no value":    `{"success":[{"op":"put","key":"a"}]}`,
		"get with value":  `{"success":[{"op":"get","key":"a","value":"x"}]}`,
		"both values":     `{"success":[{"op":"put","key":"a","value":"x","value_base64":"eA=="}]}`,
		"bad base64":      `{"success":[{"op":"put","key":"a","value_base64":"!!"}]}`,
		"not json":        `{`,
	}
	for name, b := range bad {
		if rec := serve(t, f, http.MethodPost, "/v1/txn", []byte(b), nil); rec.Code != http.StatusBadRequest || errorCode(t, rec) != "bad_request" {
			t.Errorf("%s: status %d %s", name, rec.Code, rec.Body)
		}
	}
	huge := `{"success":[{"op":"put","key":"a","value":"` + strings.Repeat("x", txnBodyFactor*DefaultServerLimits().MaxTxnBytes) + `"}]}`
	if rec := serve(t, f, http.MethodPost, "/v1/txn", []byte(huge), nil); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("huge body: status %d", rec.Code)
	}
	locked := `{"compare":[{"key":"locked","target":"version","op":"==","version":0}]}`
	if rec := serve(t, f, http.MethodPost, "/v1/txn", []byte(locked), nil); rec.Code != http.StatusConflict || errorCode(t, rec) != "conflict" {
		t.Errorf("conflict: status %d %s", rec.Code, rec.Body)
	}
}

func TestTxnRecordHandler(t *testing.T) {
	f := &fakeService{}
	rec := serve(t, f, http.MethodGet, "/v1/txn/shard-1.ab", nil, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out txnRecordJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.State != "committed" || out.DecidedAt == nil || len(out.Participants) != 2 {
		t.Fatalf("record %+v %v", out, err)
	}
	if rec := serve(t, f, http.MethodGet, "/v1/txn/nope", nil, nil); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown id: status %d", rec.Code)
	}
}

func TestTxnOutcomesAreCounted(t *testing.T) {
	s := New(&fakeService{})
	ok := `{"success":[{"op":"put","key":"a","value":"1"}]}`
	conflict := `{"compare":[{"key":"locked","target":"version","op":">","version":0}],"success":[{"op":"get","key":"locked"}]}`
	for _, body := range []string{ok, ok, conflict} {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/txn", strings.NewReader(body)))
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`raftkv_txn_total{mode="2pc",outcome="succeeded"} 2`,
		`raftkv_txn_total{mode="unknown",outcome="conflict"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}
