package httpapi

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/internal/errcode"
)

// Headers of key answers. X-Raftkv-Shard names the key's shard. The leader
// hint (X-Raftkv-Leader, X-Raftkv-Leader-Addr) comes only with a 503 or
// 504: the node could not get the request served by the shard's leader, and
// says which node it believes leads the shard, so that a client which picks
// leaders itself goes there next instead of waiting for its next look at
// GET /v1/cluster.
const (
	headerShard      = "X-Raftkv-Shard"
	headerIndex      = "X-Raftkv-Index"
	headerTerm       = "X-Raftkv-Term"
	headerLeader     = "X-Raftkv-Leader"
	headerLeaderAddr = "X-Raftkv-Leader-Addr"
)

type putResponse struct {
	Key      string `json:"key"`
	Revision uint64 `json:"revision"`
	Version  uint64 `json:"version"`
	Shard    string `json:"shard"`
}

func (s *Server) handlePut(w http.ResponseWriter, r *http.Request, key string) {
	kr, err := parseKeyRequest(r, key, true)
	if err != nil {
		writeError(w, err)
		return
	}
	defer kr.cancel()
	ctx, err := idempotencyKey(kr.ctx, w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	value, err := s.readValue(w, r, s.svc.MaxValueBytes())
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := s.putMaybeLeased(ctx, kr.query, key, value, kr.cond)
	setServed(w, res)
	markReplayed(w, res.Replayed)
	if err != nil {
		s.hintLeader(w, res.Shard, err)
		writeError(w, err)
		return
	}
	w.Header().Set("ETag", etag(res.KV.ModRevision))
	writePutAnswer(w, putResponse{Key: key, Revision: res.KV.ModRevision, Version: res.KV.Version, Shard: res.Shard})
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, key string) {
	if b, ok, err := parseBlocking(query(r)); err != nil || ok {
		if err == nil {
			err = checked(parseKeyRequest(r, key, false)) // bad input fails now, not after the wait
		}
		if err != nil {
			writeError(w, err)
			return
		}
		if !s.blockGet(w, r, key, b) {
			return
		}
	}
	kr, err := parseKeyRequest(r, key, false)
	if err != nil {
		writeError(w, err)
		return
	}
	defer kr.cancel()
	if kr.minIndex > 0 {
		if err := s.svc.WaitApplied(kr.ctx, key, kr.minIndex); err != nil {
			writeError(w, err)
			return
		}
	}
	res, err := s.svc.Get(kr.ctx, key, kr.consistency)
	setServed(w, res)
	if err != nil {
		s.hintLeader(w, res.Shard, err)
		writeError(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", etag(res.KV.ModRevision))
	h.Set("X-Raftkv-Version", strconv.FormatUint(res.KV.Version, 10))
	h.Set("X-Raftkv-Create-Revision", strconv.FormatUint(res.KV.CreateRevision, 10))
	if res.KV.Lease != "" {
		h.Set("X-Raftkv-Lease", res.KV.Lease)
	}
	h.Set("Content-Length", strconv.Itoa(len(res.KV.Value)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(res.KV.Value)
	}
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, key string) {
	kr, err := parseKeyRequest(r, key, true)
	if err != nil {
		writeError(w, err)
		return
	}
	defer kr.cancel()
	ctx, err := idempotencyKey(kr.ctx, w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := s.svc.Delete(ctx, key, kr.cond)
	setServed(w, res)
	markReplayed(w, res.Replayed)
	if err != nil {
		s.hintLeader(w, res.Shard, err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"deleted": res.Deleted})
}

// setServed names the node that served a key request and the key's shard.
func setServed(w http.ResponseWriter, res cluster.KVResult) {
	// Every key answer carries these: their values share one backing
	// array instead of a slice each (the names are canonical already).
	h, vals := w.Header(), make([]string, 0, 4)
	set := func(name, v string) {
		vals = append(vals, v)
		h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if res.Node != "" {
		set(cluster.HeaderNode, res.Node)
	}
	if res.Shard != "" {
		set(headerShard, res.Shard)
	}
	if res.Index != 0 {
		set(headerIndex, strconv.FormatUint(res.Index, 10))
		set(headerTerm, strconv.FormatUint(res.Term, 10))
	}
}

// hintLeader adds the leader hint to the answer of a key request that
// failed with 503 unavailable or 504 timeout, the two ways a node says it
// could not reach (or keep) the shard's leader. Any other error was decided
// by the leader itself or before routing, and a hint would only repeat
// X-Raftkv-Node. No hint is given when no leader is known, or when this
// node believes it leads the shard: sending the request back here would
// not help.
func (s *Server) hintLeader(w http.ResponseWriter, shard string, err error) {
	if shard == "" {
		return
	}
	if code, _ := errorStatus(err); code != errcode.Unavailable && code != errcode.Timeout {
		return
	}
	id, addr := s.svc.LeaderHint(shard)
	if id == "" || id == s.svc.ID() {
		return
	}
	w.Header().Set(headerLeader, id)
	if addr != "" {
		w.Header().Set(headerLeaderAddr, addr)
	}
}

type listItem struct {
	Key            string  `json:"key"`
	Value          *string `json:"value,omitempty"`
	ValueBase64    string  `json:"value_base64,omitempty"`
	Version        uint64  `json:"version"`
	Revision       uint64  `json:"revision"`
	CreateRevision uint64  `json:"create_revision"`
}

type listResponse struct {
	Items []listItem `json:"items"`
	More  bool       `json:"more"`
}

// handleDeletePrefix deletes every key under ?prefix= (all=true, and no
// prefix, for every key). It answers how many keys it deleted.
func (s *Server) handleDeletePrefix(w http.ResponseWriter, r *http.Request) {
	q := query(r)
	prefix := q.Get("prefix")
	all, err := boolParam(q, "all")
	switch {
	case err != nil:
	case all && prefix != "":
		err = fmt.Errorf("%w: all=true deletes every key; it takes no prefix", cluster.ErrBadRequest)
	case !all && prefix == "":
		err = fmt.Errorf("%w: give a non-empty prefix, or all=true to delete every key", cluster.ErrBadRequest)
	case len(prefix) > cluster.MaxKeyBytes:
		err = fmt.Errorf("%w: prefix is %d bytes, longer than any key (%d)", cluster.ErrBadRequest, len(prefix), cluster.MaxKeyBytes)
	}
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
	n, err := s.svc.DeletePrefix(ctx, prefix)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, deletedResponse{Deleted: n})
}

type deletedResponse struct {
	Deleted int `json:"deleted"`
}

type countResponse struct {
	Count int `json:"count"`
}

// boolParam reads ?name=true|false (absent: false).
func boolParam(q url.Values, name string) (bool, error) {
	switch v := q.Get(name); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, fmt.Errorf("%w: %s=%q: use true or false", cluster.ErrBadRequest, name, v)
	}
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	q := query(r)
	if q.Has("min_index") {
		writeError(w, fmt.Errorf("%w: min_index is for single-key reads: an index belongs to one shard, and a listing spans them all", cluster.ErrBadRequest))
		return
	}
	prefix, after := q.Get("prefix"), q.Get("after")
	for name, v := range map[string]string{"prefix": prefix, "after": after} {
		if len(v) > cluster.MaxKeyBytes {
			writeError(w, fmt.Errorf("%w: %s is %d bytes, longer than any key (%d)", cluster.ErrBadRequest, name, len(v), cluster.MaxKeyBytes))
			return
		}
	}
	limit := DefaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			writeError(w, fmt.Errorf("%w: limit must be between 1 and %d; page with after= for more", cluster.ErrBadRequest, MaxListLimit))
			return
		}
		limit = n
	}
	keysOnly, err := boolParam(q, "keys_only")
	if err != nil {
		writeError(w, err)
		return
	}
	countOnly, err := boolParam(q, "count_only")
	if err != nil {
		writeError(w, err)
		return
	}
	if countOnly && (keysOnly || after != "" || q.Has("limit")) {
		writeError(w, fmt.Errorf("%w: count_only counts every key under the prefix: it takes no keys_only, after or limit", cluster.ErrBadRequest))
		return
	}
	if b, ok, err := parseBlocking(q); err != nil || ok {
		if err == nil && countOnly {
			err = fmt.Errorf("%w: a count carries no cursor to wait past: block on the listing (keys_only=true) instead", cluster.ErrBadRequest)
		}
		if err == nil {
			err = checked(parseOptions(r, false))
		}
		if err != nil {
			writeError(w, err)
			return
		}
		if !s.blockList(w, r, prefix, b) {
			return
		}
	}
	kr, err := parseOptions(r, false)
	if err != nil {
		writeError(w, err)
		return
	}
	defer kr.cancel()
	if countOnly {
		n, err := s.svc.Count(kr.ctx, prefix, kr.consistency)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, countResponse{Count: n})
		return
	}
	res, err := s.svc.List(kr.ctx, prefix, after, limit, kr.consistency)
	if err != nil {
		writeError(w, err)
		return
	}
	if c := listCursor(res.Indexes); c != "" {
		w.Header().Set(headerCursor, c)
	}
	out := listResponse{Items: make([]listItem, 0, len(res.Items)), More: res.More}
	for _, kv := range res.Items {
		it := listItem{Key: kv.Key, Version: kv.Version, Revision: kv.ModRevision, CreateRevision: kv.CreateRevision}
		switch {
		case keysOnly:
		case utf8.Valid(kv.Value):
			v := string(kv.Value)
			it.Value = &v
		default:
			it.ValueBase64 = base64.StdEncoding.EncodeToString(kv.Value)
		}
		out.Items = append(out.Items, it)
	}
	writeJSON(w, http.StatusOK, out)
}
