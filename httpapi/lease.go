package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
)

// LeaseService is offered by a Service whose node has leases
// (cluster.Node); the lease endpoints and PUT ?lease= need it.
type LeaseService interface {
	GrantLease(ctx context.Context, ttl time.Duration) (cluster.Lease, error)
	KeepAliveLease(ctx context.Context, id string) (cluster.Lease, error)
	RevokeLease(ctx context.Context, id string) (int, error)
	GetLease(ctx context.Context, id string) (cluster.Lease, error)
	ListLeases(ctx context.Context) ([]cluster.Lease, error)
	PutWithLease(ctx context.Context, key string, value []byte, cond fsm.Condition, lease string) (cluster.KVResult, error)
}

var _ LeaseService = (*cluster.Node)(nil)

// leaseDuration is a time to live in JSON: a Go duration string ("10s",
// "1h30m") or a number of seconds.
type leaseDuration time.Duration

func (d *leaseDuration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("ttl %q: want a duration such as \"10s\"", s)
		}
		*d = leaseDuration(v)
		return nil
	}
	var secs float64
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&secs); err != nil {
		return fmt.Errorf("ttl %s: want a duration such as \"10s\" or a number of seconds", b)
	}
	*d = leaseDuration(time.Duration(secs * float64(time.Second)))
	return nil
}

type leaseGrantJSON struct {
	TTL *leaseDuration `json:"ttl"`
}

type leaseJSON struct {
	ID          string   `json:"id"`
	TTL         string   `json:"ttl"`
	TTLSeconds  float64  `json:"ttl_seconds"`
	Remaining   string   `json:"remaining,omitempty"`
	RemainingMs *int64   `json:"remaining_ms,omitempty"`
	KeyCount    *int     `json:"key_count,omitempty"`
	Keys        []string `json:"keys,omitempty"`
}

// leaseBody is the JSON of a lease: id and ttl always; with remaining,
// the time left; with keys, the keys and their count.
func leaseBody(l cluster.Lease, remaining, keys bool) leaseJSON {
	out := leaseJSON{ID: l.ID, TTL: l.TTL.String(), TTLSeconds: l.TTL.Seconds()}
	if remaining {
		ms := l.Remaining.Milliseconds()
		out.Remaining, out.RemainingMs = l.Remaining.Round(time.Millisecond).String(), &ms
	}
	if keys {
		out.KeyCount, out.Keys = &l.KeyCount, l.Keys
	}
	return out
}

func (s *Server) leases() (LeaseService, error) {
	ls, ok := s.svc.(LeaseService)
	if !ok {
		return nil, fmt.Errorf("%w: this node does not serve leases", errNoRoute)
	}
	return ls, nil
}

func (s *Server) routeLeases() {
	s.mux.HandleFunc("POST /v1/lease", s.handleLeaseGrant)
	s.mux.HandleFunc("GET /v1/lease", s.handleLeaseList)
	s.mux.HandleFunc("GET /v1/lease/{id}", s.handleLeaseGet)
	s.mux.HandleFunc("DELETE /v1/lease/{id}", s.handleLeaseRevoke)
	s.mux.HandleFunc("POST /v1/lease/{id}/keepalive", s.handleLeaseKeepAlive)
}

func (s *Server) handleLeaseGrant(w http.ResponseWriter, r *http.Request) {
	ls, err := s.leases()
	if err != nil {
		writeError(w, err)
		return
	}
	var body leaseGrantJSON
	ctx, cancel, err := s.decodeWithDeadline(w, r, &body, DefaultTimeout)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	if body.TTL == nil {
		writeError(w, fmt.Errorf("%w: a lease needs a ttl, such as {\"ttl\":\"10s\"}", cluster.ErrBadRequest))
		return
	}
	l, err := ls.GrantLease(ctx, time.Duration(*body.TTL))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, leaseBody(l, false, false))
}

func (s *Server) handleLeaseKeepAlive(w http.ResponseWriter, r *http.Request) {
	s.leaseCall(w, r, func(ctx context.Context, ls LeaseService, id string) (any, error) {
		l, err := ls.KeepAliveLease(ctx, id)
		return leaseBody(l, false, false), err
	})
}

func (s *Server) handleLeaseRevoke(w http.ResponseWriter, r *http.Request) {
	s.leaseCall(w, r, func(ctx context.Context, ls LeaseService, id string) (any, error) {
		n, err := ls.RevokeLease(ctx, id)
		return map[string]any{"revoked": true, "deleted": n}, err
	})
}

func (s *Server) handleLeaseGet(w http.ResponseWriter, r *http.Request) {
	s.leaseCall(w, r, func(ctx context.Context, ls LeaseService, id string) (any, error) {
		l, err := ls.GetLease(ctx, id)
		if l.Keys == nil {
			l.Keys = []string{}
		}
		return leaseBody(l, true, true), err
	})
}

func (s *Server) handleLeaseList(w http.ResponseWriter, r *http.Request) {
	s.leaseCall(w, r, func(ctx context.Context, ls LeaseService, _ string) (any, error) {
		list, err := ls.ListLeases(ctx)
		out := make([]leaseJSON, 0, len(list))
		for _, l := range list {
			out = append(out, leaseBody(l, true, false))
		}
		return map[string]any{"leases": out}, err
	})
}

// leaseCall runs one lease call with the request's deadline and the {id}
// of its path, and answers its result as JSON.
func (s *Server) leaseCall(w http.ResponseWriter, r *http.Request, call func(context.Context, LeaseService, string) (any, error)) {
	ls, err := s.leases()
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
	res, err := call(ctx, ls, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// putMaybeLeased is the write of a PUT: with ?lease=ID the key is
// attached to that lease.
func (s *Server) putMaybeLeased(ctx context.Context, q url.Values, key string, value []byte, cond fsm.Condition) (cluster.KVResult, error) {
	id, ok := q["lease"]
	if !ok {
		return s.svc.Put(ctx, key, value, cond)
	}
	if len(id) != 1 || id[0] == "" {
		return cluster.KVResult{}, fmt.Errorf("%w: lease=%s: want one lease id", cluster.ErrBadRequest, strconv.Quote(fmt.Sprint(id)))
	}
	ls, err := s.leases()
	if err != nil {
		return cluster.KVResult{}, err
	}
	return ls.PutWithLease(ctx, key, value, cond, id[0])
}
