package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/logstore"
	"github.com/raftkv/raftkv/mux"
	"github.com/raftkv/raftkv/raftlane"
	"github.com/raftkv/raftkv/registry"
	"github.com/raftkv/raftkv/rpc"
)

// MetaGroup is the name of the group that holds the node registry.
const MetaGroup = "meta"

// Node is one raftkv process: a replica of the meta group and of every shard.
type Node struct {
	cfg    Config
	logger hclog.Logger
	shards int
	// clusterID is fixed when the cluster is bootstrapped; a joining node
	// learns it from the member it joins through.
	clusterID string
	// incarnation names this node's data (incarnation.go); set before any
	// group opens, never changed after.
	incarnation string
	// registry is the meta group's state machine, for the raft hello; set
	// before the meta group's transport accepts anything.
	registry atomic.Pointer[registry.FSM]
	// claim is the first hello that showed another cluster's data knows
	// this node's id and address (awaitClaims).
	claim atomic.Pointer[string]
	// refused counts, per group, the raft connections this node refused
	// after their hello; the map is filled before any group opens.
	refused map[string]*atomic.Uint64

	mux *mux.Mux // nil when cfg.NewTransport or cfg.NewStreamLayer supplies transports
	// lane carries every group's appends to each peer on one connection
	// (raftlane/); nil with cfg.NewTransport.
	lane   *raftlane.Lane
	logDB  *logstore.DB // every group's raft log, in one file
	groups map[string]*group
	order  []string // meta first, then shard-1..shard-N
	meta   *group
	// rpcLayer carries node-to-node calls on the raft port; rpcServer
	// answers them once the groups are open, rpc makes them.
	rpcLayer  raft.StreamLayer
	rpcServer *rpc.Server
	rpc       *rpcClient
	ops       map[string]opSpec
	// public calls the client API of the --join addresses, the only
	// calls a node makes to another node's HTTP port (it is not a member
	// yet, so it knows no raft address).
	public *http.Client
	txn    txnState     // transaction settings and test hook (txn_config.go)
	clock  Clock        // Config.Clock, or the machine's
	coord  *coordinator // runs cross-shard transactions (txn_coord.go)

	idem idempotencyState // dates each shard's idempotency table (idempotency.go)
	// leases holds the countdowns of the leases homed on the shards this
	// node leads (lease_expiry.go).
	leases      leaseState
	leasePasses atomic.Uint64 // passes of leaseLoop, for tests

	failfast failfast                    // early elections when a leader's process dies
	recent   recentEvents[ElectionEvent] // this node's latest candidacies, leaderships and step-downs
	// recoveries are the transactions this node's recovery finished lately.
	recoveries recentEvents[TxnRecoveryEvent]
	// events fans the live event stream out (events.go).
	events eventHub
	// pilot is the autopilot run while this node leads meta (autopilot.go),
	// and deadNodesRemoved counts the nodes it removed.
	pilot            atomic.Pointer[pilot]
	deadNodesRemoved atomic.Uint64
	// removal is set once this node finds it is no longer a member
	// (removed.go); owned by removalLoop.
	removal atomic.Pointer[Removal]
	// progress is what the followers of the groups this node leads last
	// reported (followers.go); owned by progressLoop.
	progress followerReports

	stop      chan struct{} // closed by Close; every goroutine below watches it
	wg        sync.WaitGroup
	goMu      sync.Mutex // orders goFunc's wg.Add before Close's wg.Wait
	closing   bool       // set under goMu when Close begins
	closeOnce sync.Once
	closeErr  error
}

// nodeState is node.json: what a restart needs before raft can be opened.
type nodeState struct {
	NodeID    string `json:"node_id"`
	ClusterID string `json:"cluster_id"`
	Shards    int    `json:"shards"`
	// LogFormat says how the raft logs are stored (logformat.go); 0, from
	// before the field existed, is the per-group format.
	LogFormat int `json:"log_format,omitempty"`
	// Incarnation names this data (incarnation.go): made new whenever the
	// node starts with no raft state, and for a data dir from before the
	// field existed on its first start.
	Incarnation string `json:"incarnation,omitempty"`
}

// startMode says how this start came about.
type startMode int

const (
	modeRestart   startMode = iota // raft state on disk: membership comes from it
	modeBootstrap                  // nothing on disk, no --join: new single-node cluster
	modeJoin                       // nothing on disk, --join given: ask the cluster to add us
)

// New opens (or creates) every group of this node and starts it. A node that
// bootstraps or restarts is usable at once; a joining node becomes a voter
// in the background (see Ready).
func New(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logger = logger.With("node", cfg.NodeID)
	n := &Node{cfg: cfg, logger: logger, groups: map[string]*group{}, public: newPublicClient(cfg.JoinTLS), stop: make(chan struct{})}
	n.ops = n.opTable()
	n.txn.cfg = cfg.Txn
	n.clock = cfg.Clock
	if n.clock == nil {
		n.clock = systemClock{}
	}
	n.coord = n.newCoordinator()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	state, mode, err := n.loadOrCreateState(ctx)
	if err != nil {
		return nil, err
	}
	n.shards, n.clusterID = state.Shards, state.ClusterID
	if n.logDB, err = n.openLogDB(&state, n.groupNames()); err != nil {
		return nil, err
	}
	if err := n.ensureIncarnation(&state); err != nil {
		n.logDB.Close()
		return nil, err
	}
	n.refused = map[string]*atomic.Uint64{}
	for _, name := range n.groupNames() {
		n.refused[name] = new(atomic.Uint64)
	}
	if err := n.openGroups(); err != nil {
		n.Close()
		return nil, err
	}
	if mode == modeRestart && !n.meta.hasState {
		// node.json was written but the process died before raft state
		// existed: start over the way the flags say.
		mode = modeBootstrap
		if len(cfg.Join) > 0 {
			mode = modeJoin
		}
	}
	if err := n.start(mode); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// loadOrCreateState reads node.json, or decides how to create the node.
func (n *Node) loadOrCreateState(ctx context.Context) (nodeState, startMode, error) {
	path := filepath.Join(n.cfg.DataDir, "node.json")
	data, err := os.ReadFile(path)
	if err == nil {
		var st nodeState
		if err := json.Unmarshal(data, &st); err != nil {
			return st, 0, fmt.Errorf("%s is corrupt: %w", path, err)
		}
		if st.NodeID != n.cfg.NodeID {
			return st, 0, fmt.Errorf("data dir %s belongs to node %q, not %q", n.cfg.DataDir, st.NodeID, n.cfg.NodeID)
		}
		if len(n.cfg.Join) > 0 || n.cfg.Shards != st.Shards {
			n.logger.Info("existing state found: membership and shard count come from it; --join and --shards are ignored",
				"shards", st.Shards, "cluster_id", st.ClusterID)
		}
		return st, modeRestart, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nodeState{}, 0, err
	}
	st := nodeState{NodeID: n.cfg.NodeID, LogFormat: currentLogFormat}
	mode := modeBootstrap
	if len(n.cfg.Join) == 0 {
		st.Shards, st.ClusterID = n.cfg.Shards, newClusterID()
	} else {
		mode = modeJoin
		info, err := n.discover(ctx)
		if err != nil {
			return st, 0, err
		}
		st.Shards, st.ClusterID = info.Shards, info.ClusterID
	}
	if err := writeFileAtomic(path, st); err != nil {
		return st, 0, err
	}
	return st, mode, nil
}

// ensureIncarnation gives the data dir a new incarnation when it holds no
// raft state (a new node, or one whose raft state is gone), or when it was
// written before incarnations existed, and records it in node.json.
func (n *Node) ensureIncarnation(st *nodeState) error {
	fresh := true
	for _, name := range n.groupNames() {
		has, err := n.hasRaftState(name)
		if err != nil {
			return err
		}
		fresh = fresh && !has
	}
	switch {
	case fresh:
		if st.Incarnation != "" {
			n.logger.Info("no raft state on disk: this data gets a new incarnation", "old", st.Incarnation)
		}
	case st.Incarnation == "":
		n.logger.Info("data dir from before incarnations: giving it one")
	default:
		n.incarnation = st.Incarnation
		return nil
	}
	st.Incarnation = newIncarnation()
	if err := writeFileAtomic(filepath.Join(n.cfg.DataDir, "node.json"), st); err != nil {
		return err
	}
	n.incarnation = st.Incarnation
	n.logger.Info("this data's incarnation", "incarnation", n.incarnation)
	return nil
}

// hasRaftState reports whether a group has a log, a term or a checkpoint
// on disk.
func (n *Node) hasRaftState(name string) (bool, error) {
	logs, err := n.logDB.Group(name)
	if err != nil {
		return false, fmt.Errorf("group %s: open log store: %w", name, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(n.cfg.DataDir, name), snapshotRetain, n.logger.Named("snapshots"))
	if err != nil {
		return false, fmt.Errorf("group %s: open snapshot store: %w", name, err)
	}
	has, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return false, fmt.Errorf("group %s: read state: %w", name, err)
	}
	return has, nil
}

func newIncarnation() string { return hex.EncodeToString(randomBytes(16)) }

func newClusterID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeFileAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// groupNames lists the groups of this node: meta, then shard-1..shard-N.
func (n *Node) groupNames() []string {
	names := []string{MetaGroup}
	for i := 1; i <= n.shards; i++ {
		names = append(names, fmt.Sprintf("shard-%d", i))
	}
	return names
}

// openGroups creates the transport and storage of the meta group and every
// shard, and starts their raft instances.
func (n *Node) openGroups() error {
	if n.cfg.NewTransport == nil && n.cfg.NewStreamLayer == nil {
		bind := n.cfg.RaftBind
		if bind == "" {
			bind = n.cfg.RaftAddr
		}
		m, err := mux.ListenConfig(mux.Config{Bind: bind, Logger: n.logger.Named("mux"),
			ServerTLS: n.cfg.PeerServerTLS, ClientTLS: n.cfg.PeerClientTLS})
		if err != nil {
			return fmt.Errorf("raft port: %w", err)
		}
		n.mux = m
		// Registered now so that calls arriving before start wait in the
		// mux rather than being refused.
		layer, err := m.Layer(RPCLayer, n.cfg.RaftAddr)
		if err != nil {
			return err
		}
		n.rpcLayer = layer
	} else if n.cfg.NewRPCLayer != nil {
		layer, err := n.cfg.NewRPCLayer()
		if err != nil {
			return err
		}
		n.rpcLayer = layer
	}
	if err := n.openLane(); err != nil {
		return err
	}
	for _, name := range n.groupNames() {
		trans, err := n.transport(name)
		if err != nil {
			return err
		}
		var sm stateMachine
		var kv *fsm.FSM
		var reg *registry.FSM
		if name == MetaGroup {
			reg = registry.New(name)
			n.registry.Store(reg)
			sm = reg
		} else {
			kv = fsm.New(name)
			kv.SetHistoryLimits(n.cfg.WatchHistory)
			sm = kv
		}
		logger := n.logger.With("group", name)
		g, existing, err := openGroup(&n.cfg, name, sm, trans, logger, n.logDB)
		if err != nil {
			if c, ok := trans.(raft.WithClose); ok {
				c.Close()
			}
			return err
		}
		g.hasState = existing
		n.groups[name] = g
		n.order = append(n.order, name)
	}
	n.meta = n.groups[MetaGroup]
	return nil
}

func (n *Node) transport(name string) (raft.Transport, error) {
	if n.cfg.NewTransport != nil {
		return n.cfg.NewTransport(name)
	}
	var layer raft.StreamLayer
	var err error
	if n.cfg.NewStreamLayer != nil {
		layer, err = n.cfg.NewStreamLayer(name)
	} else {
		layer, err = n.mux.Layer(name, n.cfg.RaftAddr)
	}
	if err != nil {
		return nil, err
	}
	own := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		// Every connection opens with the incarnation hello.
		Stream:  &peerLayer{StreamLayer: layer, n: n, group: name},
		MaxPool: 3,
		// 1 turns raft's pipelined replication off. With the default of 2
		// the pipeline's channels are unbuffered, and when a follower
		// rejects an append (a log mismatch after a partition, a rejoin
		// with a wiped disk) the sender can park forever on one more send:
		// replication to that follower stops for good while heartbeats
		// still flow, and raft's Shutdown then never returns (seen in the
		// leave-join chaos runs; hashicorp/raft#612). Each append still
		// carries a batch of entries, which is where the throughput comes
		// from (hashicorp/raft#541).
		MaxRPCsInFlight: 1,
		Timeout:         raftRPCTimeout,
		Logger:          n.logger.Named("transport").With("group", name),
	})
	t, err := n.lane.Wrap(name, own)
	if err != nil {
		_ = own.Close()
		return nil, err
	}
	return t, nil
}

// raftRPCTimeout bounds a raft RPC on a group's transport and on the lane.
const raftRPCTimeout = 10 * time.Second

// LaneLayer is the name of the raft-port layer that carries every group's
// appends (raftlane/). Like RPCLayer it cannot clash with a group's name.
const LaneLayer = "_lane"

// openLane starts the node's lane on the mux's layer or the test's stream
// layer; connections open with the incarnation hello, as a group's do.
func (n *Node) openLane() error {
	if n.cfg.NewTransport != nil {
		return nil
	}
	var layer raft.StreamLayer
	var err error
	if n.cfg.NewStreamLayer != nil {
		layer, err = n.cfg.NewStreamLayer(LaneLayer)
	} else {
		layer, err = n.mux.Layer(LaneLayer, n.cfg.RaftAddr)
	}
	if err != nil {
		return err
	}
	n.lane = raftlane.New(raftlane.Config{
		Layer:   &peerLayer{StreamLayer: layer, n: n, group: LaneLayer},
		Timeout: raftRPCTimeout,
		Logger:  n.logger.Named("lane"),
	})
	return nil
}

// start launches the goroutines this node owns and, for a new node, the
// bootstrap or the join.
func (n *Node) start(mode startMode) error {
	if err := n.startRPC(); err != nil {
		return err
	}
	for _, name := range n.order {
		g := n.groups[name]
		n.goFunc(func() { g.watchLeaders(n.stop, n.cfg.HeartbeatTimeout, n.recent.add, n.publish) })
		written := func(index uint64, bytes int64, took time.Duration) {
			n.publish(g, Event{Type: EventCheckpoint, Index: index, Bytes: bytes, Ms: took.Milliseconds()})
		}
		g.checkpoints.onWritten.Store(&written)
		loaded := func() { n.publish(g, Event{Type: EventCheckpointLoaded, Index: g.fsm.AppliedIndex()}) }
		g.outcomes.onRestore.Store(&loaded)
		n.goFunc(func() { g.watchReplay(n.stop) })
	}
	n.watchPeers()
	n.goFunc(n.txnRecoveryLoop)
	n.goFunc(n.idempotencyLoop)
	n.goFunc(n.leaseLoop)
	n.goFunc(n.balanceLoop)
	n.goFunc(n.autopilotLoop)
	n.goFunc(n.removalLoop)
	n.goFunc(n.progressLoop)
	switch mode {
	case modeBootstrap:
		if err := n.awaitClaims(); err != nil {
			return err
		}
		n.logger.Info("bootstrapping a new cluster", "shards", n.shards, "cluster_id", n.clusterID)
		for _, name := range n.order {
			if err := n.groups[name].bootstrap(n.cfg.NodeID, n.cfg.RaftAddr); err != nil {
				return err
			}
		}
		n.goFunc(func() { n.registerSelf(true) })
	case modeJoin:
		n.logger.Info("joining an existing cluster", "via", n.cfg.Join, "shards", n.shards)
		n.goFunc(n.joinLoop)
	case modeRestart:
		n.logger.Info("restarting from existing state", "shards", n.shards, "cluster_id", n.clusterID)
		n.goFunc(func() { n.registerSelf(false) })
	}
	return nil
}

// goFunc runs f in a goroutine that Close waits for. Once Close has begun
// it starts nothing (f would race with the stores being closed).
func (n *Node) goFunc(f func()) {
	n.goMu.Lock()
	defer n.goMu.Unlock()
	if n.closing {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// checkOpen fails once Close has begun.
func (n *Node) checkOpen() error {
	select {
	case <-n.stop:
		return fmt.Errorf("%w: node is shutting down", ErrUnavailable)
	default:
		return nil
	}
}

// ID returns this node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Close stops the node: background goroutines, then every raft group
// (shards first, meta last), then the raft port. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.goMu.Lock()
		n.closing = true
		close(n.stop)
		n.goMu.Unlock()
		n.closeEvents()
		n.wg.Wait()
		if n.rpcServer != nil {
			_ = n.rpcServer.Close()
			n.rpc.c.Close()
		} else if n.rpcLayer != nil {
			_ = n.rpcLayer.Close()
		}
		for i := len(n.order) - 1; i >= 0; i-- {
			if err := n.groups[n.order[i]].close(); err != nil && n.closeErr == nil {
				n.closeErr = fmt.Errorf("close %s: %w", n.order[i], err)
			}
		}
		if n.lane != nil {
			_ = n.lane.Close()
		}
		if n.mux != nil {
			if err := n.mux.Close(); err != nil && n.closeErr == nil {
				n.closeErr = err
			}
		}
		if n.logDB != nil {
			if err := n.logDB.Close(); err != nil && n.closeErr == nil {
				n.closeErr = fmt.Errorf("close the log file: %w", err)
			}
		}
	})
	return n.closeErr
}

// sleepOrStop waits d, returning false if the node is stopping.
func (n *Node) sleepOrStop(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-n.stop:
		return false
	case <-t.C:
		return true
	}
}

// MaxValueBytes is the largest value this node accepts.
func (n *Node) MaxValueBytes() int { return n.cfg.MaxValueBytes }
