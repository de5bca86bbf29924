package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Node-to-node protocol. A node that is not the leader of a group runs an
// operation there by POSTing {group, op, args} to the leader's
// /v1/internal/op. The receiver runs it only if it leads that group right now
// (one hop at most); otherwise it answers not_leader and the sender looks up
// the new leader and tries again until its deadline.

const (
	internalOpPath      = "/v1/internal/op"
	internalAppliedPath = "/v1/internal/applied"
	// headerNode names the node that served a request; both the public API
	// and the internal protocol set it.
	HeaderNode = "X-Raftkv-Node"
	// headerDeadline carries the caller's remaining time in milliseconds so
	// the leader stops working when the caller has given up.
	headerDeadline = "X-Raftkv-Deadline-Ms"
)

type opRequest struct {
	Group string          `json:"group"`
	Op    string          `json:"op"`
	Args  json.RawMessage `json:"args"`
}

type opResponse struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *wireError      `json:"error,omitempty"`
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// opHandler runs one named operation on this node, which leads the group.
type opHandler func(ctx context.Context, g *group, args json.RawMessage) (any, error)

// handle adapts a typed operation to an opHandler.
func handle[A, R any](fn func(ctx context.Context, g *group, args A) (R, error)) opHandler {
	return func(ctx context.Context, g *group, raw json.RawMessage) (any, error) {
		var a A
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("%w: decode arguments: %v", ErrBadRequest, err)
		}
		return fn(ctx, g, a)
	}
}

// errDialFailed marks a forwarding failure that happened before the request
// reached the other node, so retrying cannot run the operation twice.
var errDialFailed = errors.New("could not reach the leader")

// rpcClient sends internal operations to other nodes.
type rpcClient struct {
	http *http.Client
}

func newRPCClient() *rpcClient {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &rpcClient{http: &http.Client{Transport: tr}}
}

// call runs op on the node at addr and decodes its result into out. It returns
// the id of the node that answered.
func (c *rpcClient) call(ctx context.Context, addr, groupName, op string, args, out any) (string, error) {
	rawArgs, err := json.Marshal(args)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(opRequest{Group: groupName, Op: op, Args: rawArgs})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+internalOpPath, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set(headerDeadline, strconv.FormatInt(time.Until(dl).Milliseconds(), 10))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return "", fmt.Errorf("%w: %v", errDialFailed, err)
		}
		return "", fmt.Errorf("%w: forwarding to %s: %v", ErrIndeterminate, addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", fmt.Errorf("%w: reading reply from %s: %v", ErrIndeterminate, addr, err)
	}
	served := resp.Header.Get(HeaderNode)
	var r opResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return served, fmt.Errorf("%w: bad reply from %s (status %d)", ErrIndeterminate, addr, resp.StatusCode)
	}
	if r.Error != nil {
		return served, errorFromCode(r.Error.Code, r.Error.Message)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result, out); err != nil {
			return served, fmt.Errorf("decode reply from %s: %w", addr, err)
		}
	}
	return served, nil
}

// fetchApplied asks the node at addr how far it has applied a group.
func (c *rpcClient) fetchApplied(ctx context.Context, addr, groupName string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+internalAppliedPath+"?group="+groupName, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Applied uint64 `json:"applied_index"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	return out.Applied, nil
}

// InternalHandler serves the node-to-node protocol. The HTTP layer mounts it
// under /v1/internal/.
func (n *Node) InternalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+internalOpPath, n.serveOp)
	mux.HandleFunc("GET "+internalAppliedPath, n.serveApplied)
	return mux
}

func (n *Node) serveOp(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderNode, n.cfg.NodeID)
	w.Header().Set("Content-Type", "application/json")
	ctx := r.Context()
	if ms, err := strconv.ParseInt(r.Header.Get(headerDeadline), 10, 64); err == nil && ms > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	var req opRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil {
		writeOpError(w, fmt.Errorf("%w: %v", ErrBadRequest, err))
		return
	}
	g, ok := n.groups[req.Group]
	h, known := n.ops[req.Op]
	switch {
	case !ok:
		writeOpError(w, fmt.Errorf("%w: group %q", ErrNotFound, req.Group))
		return
	case !known:
		writeOpError(w, fmt.Errorf("%w: unknown operation %q", ErrBadRequest, req.Op))
		return
	case !g.isLeader():
		writeOpError(w, errNotLeader)
		return
	}
	res, err := h(ctx, g, req.Args)
	if err != nil {
		writeOpError(w, err)
		return
	}
	raw, err := json.Marshal(res)
	if err != nil {
		writeOpError(w, err)
		return
	}
	_ = json.NewEncoder(w).Encode(opResponse{Result: raw})
}

func writeOpError(w http.ResponseWriter, err error) {
	_ = json.NewEncoder(w).Encode(opResponse{Error: &wireError{Code: Code(err), Message: err.Error()}})
}

func (n *Node) serveApplied(w http.ResponseWriter, r *http.Request) {
	g, ok := n.groups[r.URL.Query().Get("group")]
	if !ok {
		http.Error(w, `{"error":{"code":"not_found","message":"unknown group"}}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]uint64{"applied_index": g.fsm.AppliedIndex()})
}
