package httpapi

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
)

type txnCompareJSON struct {
	Key         string  `json:"key"`
	Target      string  `json:"target"`
	Op          string  `json:"op"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 string  `json:"value_base64,omitempty"`
	Version     *uint64 `json:"version,omitempty"`
	Revision    *uint64 `json:"revision,omitempty"`
}

type txnOpJSON struct {
	Op          string  `json:"op"`
	Key         string  `json:"key"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 string  `json:"value_base64,omitempty"`
}

type txnRequestJSON struct {
	Compare []txnCompareJSON `json:"compare"`
	Success []txnOpJSON      `json:"success"`
	Failure []txnOpJSON      `json:"failure"`
}

type txnResultJSON struct {
	Op          string  `json:"op"`
	Key         string  `json:"key"`
	Found       bool    `json:"found"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 string  `json:"value_base64,omitempty"`
	Version     uint64  `json:"version"`
	Revision    uint64  `json:"revision"`
}

type txnInfoJSON struct {
	ID     string   `json:"id"`
	Mode   string   `json:"mode"`
	Shards []string `json:"shards"`
}

type txnResponseJSON struct {
	Succeeded bool            `json:"succeeded"`
	Results   []txnResultJSON `json:"results"`
	Txn       txnInfoJSON     `json:"txn"`
}

type txnRecordJSON struct {
	ID           string     `json:"id"`
	State        string     `json:"state"`
	Succeeded    bool       `json:"succeeded"`
	Participants []string   `json:"participants"`
	StartedAt    time.Time  `json:"started_at"`
	DecidedAt    *time.Time `json:"decided_at,omitempty"`
	Resolved     bool       `json:"resolved"`
}

func (s *Server) handleTxn(w http.ResponseWriter, r *http.Request) {
	// The transaction's own limit (keys plus values) is checked by the node
	// after decoding; this bound only stops a client from streaming without
	// end, leaving room for JSON and base64.
	var body txnRequestJSON
	if err := s.decodeJSON(w, r, &body, int64(txnBodyFactor)*int64(s.limits.MaxTxnBytes), "transaction body"); err != nil {
		writeError(w, err)
		return
	}
	req, err := body.toRequest()
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel, err := withDeadline(r, DefaultTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	if ctx, err = idempotencyKey(ctx, w, r); err != nil {
		writeError(w, err)
		return
	}
	res, err := s.svc.Txn(ctx, req)
	s.metrics.observeTxn(res.Mode, res.Succeeded, err)
	if err != nil {
		writeError(w, err)
		return
	}
	markReplayed(w, res.Replayed)
	out := txnResponseJSON{Succeeded: res.Succeeded, Results: []txnResultJSON{},
		Txn: txnInfoJSON{ID: res.ID, Mode: res.Mode, Shards: res.Shards}}
	for _, o := range res.Results {
		it := txnResultJSON{Op: o.Op.String(), Key: o.Key, Found: o.Found, Version: o.KV.Version, Revision: o.KV.ModRevision}
		if o.Op != fsm.OpDelete && (o.Found || o.Op == fsm.OpPut) {
			if utf8.Valid(o.KV.Value) {
				v := string(o.KV.Value)
				it.Value = &v
			} else {
				it.ValueBase64 = base64.StdEncoding.EncodeToString(o.KV.Value)
			}
		}
		out.Results = append(out.Results, it)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleTxnRecord(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, err := withDeadline(r, DefaultTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	// The server dispatches through mux.Handler, which does not fill in
	// path values, so the id comes from the path itself.
	rec, err := s.svc.TxnRecord(ctx, strings.TrimPrefix(r.URL.Path, "/v1/txn/"))
	if err != nil {
		writeError(w, err)
		return
	}
	out := txnRecordJSON{ID: rec.ID, State: rec.State.String(), Succeeded: rec.Succeeded,
		Participants: rec.Participants, StartedAt: time.Unix(0, rec.StartedAt).UTC(), Resolved: rec.Resolved}
	if rec.State != fsm.StatePending {
		t := time.Unix(0, rec.DecidedAt).UTC()
		out.DecidedAt = &t
	}
	writeJSON(w, http.StatusOK, out)
}

func (b *txnRequestJSON) toRequest() (cluster.TxnRequest, error) {
	var req cluster.TxnRequest
	for i, c := range b.Compare {
		if err := cluster.ValidateKey(c.Key); err != nil {
			return req, fmt.Errorf("compare %d: %w", i, err)
		}
		cmp, err := c.toCompare()
		if err != nil {
			return req, fmt.Errorf("%w: compare %d: %v", cluster.ErrBadRequest, i, err)
		}
		req.Compares = append(req.Compares, cmp)
	}
	for _, list := range []struct {
		name string
		in   []txnOpJSON
		out  *[]fsm.Op
	}{{"success", b.Success, &req.Success}, {"failure", b.Failure, &req.Failure}} {
		for i, o := range list.in {
			if err := cluster.ValidateKey(o.Key); err != nil {
				return req, fmt.Errorf("%s op %d: %w", list.name, i, err)
			}
			op, err := o.toOp()
			if err != nil {
				return req, fmt.Errorf("%w: %s op %d: %v", cluster.ErrBadRequest, list.name, i, err)
			}
			*list.out = append(*list.out, op)
		}
	}
	return req, nil
}

func (c txnCompareJSON) toCompare() (fsm.Compare, error) {
	out := fsm.Compare{Key: c.Key}
	switch c.Op {
	case "==", "=":
		out.Op = fsm.OpEqual
	case "!=":
		out.Op = fsm.OpNotEqual
	case "<":
		out.Op = fsm.OpLess
	case ">":
		out.Op = fsm.OpGreater
	default:
		return out, fmt.Errorf("op %q: use ==, !=, < or >", c.Op)
	}
	switch c.Target {
	case "value":
		v, err := valueOf(c.Value, c.ValueBase64, true)
		if err != nil {
			return out, err
		}
		out.Target, out.Value = fsm.TargetValue, v
	case "version":
		if c.Version == nil {
			return out, errors.New(`target "version" needs "version"`)
		}
		out.Target, out.Number = fsm.TargetVersion, *c.Version
	case "revision":
		if c.Revision == nil {
			return out, errors.New(`target "revision" needs "revision"`)
		}
		out.Target, out.Number = fsm.TargetRevision, *c.Revision
	default:
		return out, fmt.Errorf("target %q: use value, version or revision", c.Target)
	}
	return out, nil
}

func (o txnOpJSON) toOp() (fsm.Op, error) {
	out := fsm.Op{Key: o.Key}
	switch o.Op {
	case "get":
		out.Kind = fsm.OpGet
	case "delete":
		out.Kind = fsm.OpDelete
	case "put":
		v, err := valueOf(o.Value, o.ValueBase64, true)
		if err != nil {
			return out, err
		}
		out.Kind, out.Value = fsm.OpPut, v
		return out, nil
	default:
		return out, fmt.Errorf("op %q: use put, delete or get", o.Op)
	}
	if o.Value != nil || o.ValueBase64 != "" {
		return out, fmt.Errorf("%s takes no value", o.Op)
	}
	return out, nil
}

// valueOf returns the bytes of "value" or "value_base64" (exactly one).
func valueOf(v *string, b64 string, required bool) ([]byte, error) {
	switch {
	case v != nil && b64 != "":
		return nil, errors.New(`give "value" or "value_base64", not both`)
	case v != nil:
		return []byte(*v), nil
	case b64 != "":
		out, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("value_base64: %v", err)
		}
		return out, nil
	case required:
		return nil, errors.New(`"value" or "value_base64" is required`)
	}
	return nil, nil
}
