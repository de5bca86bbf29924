package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/rpc"
)

// Node-to-node protocol. A node that is not the leader of a group runs an
// operation there by calling the leader over the rpc package, on the raft
// port (RPCLayer). The receiver runs it only if it leads that group right
// now (one hop at most); otherwise it answers not_leader and the sender
// looks up the new leader and tries again until its deadline. A few calls
// (applied, ping, ready) ask about the receiving node itself and need no
// leadership.
//
// Nothing here is reachable from the client HTTP port. Every operation
// declares the kind of group it is for, and its arguments are checked by the
// same function that checks them for a local caller, before anything is
// proposed.

// RPCLayer is the name of the mux layer that carries node-to-node calls.
// Group names are "meta" and "shard-N", so it cannot clash with one.
const RPCLayer = "_rpc"

// HeaderNode names the node that served a request (set by the public API).
const HeaderNode = "X-Raftkv-Node"

// groupKind says which groups an operation may target.
type groupKind int

const (
	anyGroup   groupKind = iota
	metaGroup            // the registry
	shardGroup           // a key-value shard
)

// opSpec is one operation another node may run here.
type opSpec struct {
	kind groupKind
	// leaderOnly operations run only on the group's current leader.
	leaderOnly bool
	// admin operations change the cluster: a client's forwarded call needs
	// the admin role (a node's own call carries no caller).
	admin bool
	run   func(ctx context.Context, g *group, args []byte) (any, error)
}

// handle adapts a typed operation to an opSpec.
func handle[A, R any](kind groupKind, fn func(ctx context.Context, g *group, args A) (R, error)) opSpec {
	return opSpec{kind: kind, leaderOnly: true, run: func(ctx context.Context, g *group, raw []byte) (any, error) {
		var a A
		if err := rpc.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("%w: decode arguments: %v", ErrBadRequest, err)
		}
		return fn(ctx, g, a)
	}}
}

// local marks an operation that asks about this node and needs no
// leadership.
func local(s opSpec) opSpec { s.leaderOnly = false; return s }

// adminOnly marks an operation that changes the cluster.
func adminOnly(s opSpec) opSpec { s.admin = true; return s }

// opTable lists every operation another node may run here.
func (n *Node) opTable() map[string]opSpec {
	return map[string]opSpec{
		"put":             handle(shardGroup, n.putLocal),
		"delete":          handle(shardGroup, n.deleteLocal),
		"get":             handle(shardGroup, n.getLocal),
		"list":            handle(shardGroup, n.listLocal),
		"count":           handle(shardGroup, n.countLocal),
		"delete-prefix":   handle(shardGroup, n.deletePrefixLocal),
		"lease-grant":     handle(shardGroup, n.leaseGrantLocal),
		"lease-keepalive": handle(shardGroup, n.keepAliveLocal),
		"lease-revoke":    handle(shardGroup, n.revokeLocal),
		"lease-phase":     handle(shardGroup, n.leasePhaseLocal),
		"lease-get":       handle(shardGroup, n.leaseGetLocal),
		"lease-list":      handle(shardGroup, n.leaseListLocal),
		"lease-put":       handle(shardGroup, n.leasePutLocal),
		"init":            adminOnly(handle(metaGroup, n.initLocal)),
		"register":        adminOnly(handle(metaGroup, n.registerLocal)),
		"deregister":      adminOnly(handle(metaGroup, n.deregisterLocal)),
		"add-member":      adminOnly(handle(anyGroup, n.addMemberLocal)),
		"remove-member":   adminOnly(handle(anyGroup, n.removeMemberLocal)),
		"transfer":        adminOnly(handle(anyGroup, n.transferLocal)),
		"put-token":       adminOnly(handle(metaGroup, n.putTokenLocal)),
		"delete-token":    adminOnly(handle(metaGroup, n.deleteTokenLocal)),
		"put-role":        adminOnly(handle(metaGroup, n.putRoleLocal)),
		"delete-role":     adminOnly(handle(metaGroup, n.deleteRoleLocal)),
		"read-index":      handle(anyGroup, n.readIndexLocal),
		opTxn:             handle(shardGroup, n.txnLocal),
		opTxnPrepare:      handle(shardGroup, n.prepareLocal),
		opTxnDecide:       handle(shardGroup, n.decideLocal),
		opTxnResolve:      handle(shardGroup, n.resolveLocal),
		opTxnMarkResolved: handle(shardGroup, n.markResolvedLocal),
		opTxnRecord:       handle(shardGroup, n.recordLocal),
		opTxnOnce:         handle(shardGroup, n.txnLocal),
		opTxnDecideOnce:   handle(shardGroup, n.decideOnceLocal),
		"applied":         local(handle(anyGroup, n.appliedHere)),
		"ping":            local(handle(metaGroup, n.pingHere)),
		"status":          local(handle(metaGroup, n.statusHere)),
		"ready":           local(handle(metaGroup, n.readyHere)),
		"batch":           n.batchOp(),
	}
}

// serveRPC runs one call from another node.
func (n *Node) serveRPC(ctx context.Context, req rpc.Request) ([]byte, error) {
	g, ok := n.groups[req.Group]
	spec, known := n.ops[req.Op]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: group %q", ErrNotFound, req.Group)
	case !known:
		return nil, fmt.Errorf("%w: unknown operation %q", ErrBadRequest, req.Op)
	case spec.kind == metaGroup && g != n.meta, spec.kind == shardGroup && g == n.meta:
		return nil, fmt.Errorf("%w: operation %q does not apply to group %s", ErrBadRequest, req.Op, req.Group)
	case spec.leaderOnly && !g.isLeader():
		return nil, errNotLeader
	}
	if req.Caller != "" {
		ctx = WithCaller(ctx, req.Caller)
		if spec.admin {
			if err := n.RequireAdmin(ctx); err != nil {
				return nil, err
			}
		}
	}
	res, err := spec.run(ctx, g, req.Args)
	if err != nil {
		return nil, err
	}
	return rpc.Marshal(res)
}

// newPublicClient returns the HTTP client for the --join addresses; tlsCfg
// (Config.JoinTLS) is used for the https ones.
func newPublicClient(tlsCfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		IdleConnTimeout:     30 * time.Second,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 5 * time.Second,
	}}
}

// errDialFailed marks a forwarding failure that happened before the request
// reached the other node, so retrying cannot run the operation twice.
var errDialFailed = errors.New("could not reach the leader")

// rpcClient sends operations to other nodes.
type rpcClient struct {
	c     *rpc.Client
	batch *batcher // forwarded key operations (batch.go)
}

func newRPCClient(dial rpc.DialFunc) *rpcClient {
	c := rpc.NewClient(rpc.ClientConfig{Dial: dial})
	return &rpcClient{c: c, batch: &batcher{c: c, lanes: map[laneKey]*lane{}}}
}

// call runs op on the node whose raft port is addr and decodes its result
// into out. It returns the id of the node that answered.
func (c *rpcClient) call(ctx context.Context, addr, groupName, op string, args, out any) (string, error) {
	if batchable[op] {
		return c.batch.call(ctx, addr, groupName, op, args, out)
	}
	raw, err := rpc.Marshal(args)
	if err != nil {
		return "", err
	}
	resp, err := c.c.Call(ctx, addr, rpc.Request{Group: groupName, Op: op, Caller: callerOf(ctx), Args: raw})
	var remote *rpc.RemoteError
	switch {
	case errors.As(err, &remote):
		return remote.Node, errorFromCode(remote.Code, remote.Message)
	case errors.Is(err, rpc.ErrNotSent):
		return "", fmt.Errorf("%w: %v", errDialFailed, err)
	case err != nil:
		return "", fmt.Errorf("%w: calling %s: %v", ErrIndeterminate, addr, err)
	}
	if out != nil {
		if err := rpc.Unmarshal(resp.Result, out); err != nil {
			return resp.Node, fmt.Errorf("%w: bad reply from %s: %v", ErrIndeterminate, addr, err)
		}
	}
	return resp.Node, nil
}

// fetchApplied asks the node at raftAddr how far it has applied a group.
func (n *Node) fetchApplied(ctx context.Context, raftAddr, groupName string) (uint64, error) {
	var applied uint64
	_, err := n.rpc.call(ctx, raftAddr, groupName, "applied", struct{}{}, &applied)
	return applied, err
}

func (n *Node) appliedHere(_ context.Context, g *group, _ struct{}) (uint64, error) {
	return g.fsm.AppliedIndex(), nil
}

func (n *Node) pingHere(context.Context, *group, struct{}) (string, error) {
	return n.cfg.NodeID, nil
}

// readiness is a node's answer to "ready": what Ready says.
type readiness struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason"`
}

func (n *Node) readyHere(context.Context, *group, struct{}) (readiness, error) {
	ok, why := n.Ready()
	return readiness{ok, why}, nil
}

// startRPC opens the node-to-node layer on the raft port and serves it.
func (n *Node) startRPC() error {
	layer := n.rpcLayer
	if layer == nil {
		return errors.New("no transport for node-to-node calls: Config.NewTransport needs Config.NewRPCLayer")
	}
	dial := func(addr string, timeout time.Duration) (net.Conn, error) {
		return layer.Dial(raft.ServerAddress(addr), timeout)
	}
	n.rpc = newRPCClient(dial)
	n.rpcServer = rpc.Serve(layer, rpc.ServerConfig{
		NodeID:  n.cfg.NodeID,
		Handler: n.serveRPC,
		Code:    Code,
		Logger:  n.logger.Named("rpc"),
	})
	return nil
}
