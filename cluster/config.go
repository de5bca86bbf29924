package cluster

import (
	"crypto/tls"
	"fmt"
	"regexp"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// Config describes one node. Build it with DefaultConfig and change what you
// need; New calls Validate first.
type Config struct {
	// NodeID names this node in every group. It must be unique in the cluster
	// and stable across restarts: the raft state on disk belongs to it.
	NodeID string
	// DataDir holds node.json, raft-wal/ (every group's log) and one
	// folder per group (its snapshots/).
	DataDir string
	// HTTPAddr and RaftAddr are the addresses peers use to reach this node
	// (advertised, not necessarily the bind addresses).
	HTTPAddr string
	RaftAddr string
	// Shards is the number of data shards, used only when this node
	// bootstraps a new cluster. A joining or restarting node learns it from
	// the cluster or from its own data dir.
	Shards int
	// Join lists HTTP addresses of existing members. Used only when the data
	// dir holds no state yet; the node asks them to add it, retrying until it
	// is a voter of every group. An entry is "host:port" (plain HTTP) or a
	// URL, "http://host:port" or "https://host:port".
	Join []string
	// JoinTLS is the client config for https Join addresses: the CA that
	// signed the members' HTTP certificates and, for a cluster that requires
	// client certificates, this node's own. Nil means the system's roots and
	// no client certificate.
	JoinTLS *tls.Config

	// PeerServerTLS and PeerClientTLS, set together (certs.PeerTLS makes
	// both), put mutual TLS on the raft port: raft traffic and node-to-node
	// calls then come only from nodes holding a certificate of the cluster
	// CA. Nil serves and dials plaintext, trusting whoever reaches the port.
	PeerServerTLS *tls.Config
	PeerClientTLS *tls.Config

	// Raft timing. A follower that hears nothing from its leader for
	// HeartbeatTimeout (randomised up to 2x) starts a pre-vote; a leader
	// that cannot reach a quorum for LeaderLeaseTimeout steps down; leaders
	// send heartbeats every HeartbeatTimeout/10 (randomised up to 2x). The
	// defaults are long enough that a leader on a saturated 2-core machine
	// is never taken for dead, and cheap when idle. A leader whose process
	// dies is replaced much sooner than HeartbeatTimeout: its peers see its
	// connections end and its port refuse, and elect after
	// LeaderLeaseTimeout of silence (failfast.go). docs/fault-tolerance.md
	// has the measurements behind both.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration

	// Checkpoints. raft takes one when SnapshotThreshold entries have been
	// appended since the last, checking every SnapshotInterval (staggered),
	// and then compacts the log, keeping TrailingLogs entries so a follower
	// that is slightly behind catches up from the log instead of a full
	// checkpoint.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// BalanceInterval is how often this node checks whether it leads two or
	// more groups more than another ready voter, and if so hands one over.
	// 0 turns leader balancing off.
	BalanceInterval time.Duration

	// DeadNodeTimeout, when positive, lets the leader of the meta group
	// remove from every group a node that no call has reached for that
	// long, if the cluster keeps its quorum (autopilot.go). 0: never.
	DeadNodeTimeout time.Duration

	// Txn tunes transactions (limits, recovery of abandoned ones).
	Txn TxnConfig
	// IdempotencyWindow is how long a shard remembers an idempotency key
	// and its write's first result, by its leader's clock (0:
	// DefaultIdempotencyWindow, 10 minutes). A retry within it gets the
	// first result; after it the key is forgotten and a retry is a new
	// write (idempotency.go).
	IdempotencyWindow time.Duration
	// Clock is this node's clock (nil: the machine's). Nodes need not
	// agree on the time; tests give each in-process node its own skew.
	Clock Clock

	// WatchHistory bounds each shard replica's in-memory change history,
	// which watches read (docs/watch.md); a zero field takes its default
	// (fsm.DefaultHistoryLimits: 10 000 changes or 16 MiB).
	WatchHistory fsm.HistoryLimits

	// MaxValueBytes caps a value's size (bytes). Larger writes are refused
	// before anything is proposed.
	MaxValueBytes int
	// MaxPendingWrites bounds the writes a group's leader has proposed and
	// not yet answered. Past it a write is refused at once with
	// ErrOverloaded (HTTP 429 with Retry-After) instead of joining a queue
	// that would only grow latency.
	MaxPendingWrites int
	// MaxConcurrentBackups bounds the backups this node stages at once
	// (each is a full copy of every group on local disk until it has been
	// streamed). Past it PrepareBackup answers ErrOverloaded (HTTP 429 with
	// Retry-After) at once.
	MaxConcurrentBackups int
	// JoinTimeout bounds one membership change across every group.
	JoinTimeout time.Duration

	// Logger receives every log line, with node and group fields.
	Logger hclog.Logger

	// NewTransport, when set, supplies each group's raft transport (tests use
	// raft's in-memory transport). When nil the node listens on RaftBind and
	// multiplexes every group over that one TCP port.
	NewTransport func(group string) (raft.Transport, error)
	// NewStreamLayer, when set (and NewTransport is not), supplies the
	// stream layer each group's raft transport runs on instead of the mux,
	// with the incarnation hello on every connection as over the mux (tests
	// use in-memory pipes they can cut).
	NewStreamLayer func(group string) (raft.StreamLayer, error)
	// NewRPCLayer supplies the node-to-node call layer when NewTransport
	// or NewStreamLayer is set (the mux provides it otherwise). Its Dial
	// takes another node's raft address.
	NewRPCLayer func() (raft.StreamLayer, error)
	// BootstrapWait is how long a node with an empty data dir and no Join
	// listens for a cluster that still lists it before it bootstraps a new
	// one; if a member of one dials it meanwhile, New refuses to start
	// (incarnation.go, awaitClaims). 0 bootstraps at once.
	BootstrapWait time.Duration
	// Auth requires a bearer token on every client request (auth.go).
	Auth bool
	// BootstrapToken, with Auth, is the secret of an admin token stored
	// under the id "bootstrap" when the node starts (at least 16 bytes).
	// Without it, the node that creates a cluster makes a random one and
	// hands it to OnBootstrapToken, once.
	BootstrapToken   string
	OnBootstrapToken func(secret string)
	// JoinToken is sent to the --join addresses when auth is on there.
	JoinToken string
	// RaftBind is the TCP address the raft port listens on (default RaftAddr).
	RaftBind string
}

// Defaults of the values users most often tune.
const (
	DefaultShards        = 4
	DefaultMaxValueBytes = 1 << 20
	MaxKeyBytes          = 4096

	DefaultMaxPendingWrites     = 1024
	DefaultMaxConcurrentBackups = 2
	DefaultHeartbeatTimeout     = time.Second
	DefaultLeaderLeaseTimeout   = 500 * time.Millisecond
	DefaultBootstrapWait        = 5 * time.Second
)

// DefaultConfig returns the configuration of a single node called node1 on
// the default ports.
func DefaultConfig() Config {
	return Config{
		NodeID:               "node1",
		DataDir:              "./raftkv-data",
		HTTPAddr:             "127.0.0.1:8080",
		RaftAddr:             "127.0.0.1:7000",
		Shards:               DefaultShards,
		HeartbeatTimeout:     DefaultHeartbeatTimeout,
		ElectionTimeout:      DefaultHeartbeatTimeout,
		LeaderLeaseTimeout:   DefaultLeaderLeaseTimeout,
		MaxValueBytes:        DefaultMaxValueBytes,
		MaxPendingWrites:     DefaultMaxPendingWrites,
		MaxConcurrentBackups: DefaultMaxConcurrentBackups,
		JoinTimeout:          60 * time.Second,
		BootstrapWait:        DefaultBootstrapWait,
		Txn:                  DefaultTxnConfig(),
		IdempotencyWindow:    DefaultIdempotencyWindow,
		BalanceInterval:      10 * time.Second,
		SnapshotThreshold:    8192,
		SnapshotInterval:     30 * time.Second,
		TrailingLogs:         10240,
	}
}

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks every field and the rules between them.
func (c *Config) Validate() error {
	switch {
	case !nodeIDPattern.MatchString(c.NodeID):
		return fmt.Errorf("node id %q: use 1-64 letters, digits, '.', '_' or '-'", c.NodeID)
	case c.DataDir == "":
		return fmt.Errorf("data dir is required")
	case c.HTTPAddr == "" || c.RaftAddr == "":
		return fmt.Errorf("http and raft addresses are required")
	case c.Shards < 1 || c.Shards > 256:
		return fmt.Errorf("shards must be between 1 and 256, got %d", c.Shards)
	case c.HeartbeatTimeout < 5*time.Millisecond:
		return fmt.Errorf("heartbeat timeout %s is too short", c.HeartbeatTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout:
		return fmt.Errorf("election timeout (%s) must be at least the heartbeat timeout (%s)", c.ElectionTimeout, c.HeartbeatTimeout)
	case c.LeaderLeaseTimeout <= 0 || c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("leader lease timeout (%s) must be positive and at most the heartbeat timeout (%s)", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	case c.BootstrapToken != "" && len(c.BootstrapToken) < minBootstrapSecret:
		return fmt.Errorf("the bootstrap token must be at least %d bytes", minBootstrapSecret)
	case c.BootstrapToken != "" && !c.Auth:
		return fmt.Errorf("a bootstrap token needs auth on")
	case c.WatchHistory.Changes < 0 || c.WatchHistory.Bytes < 0:
		return fmt.Errorf("watch history limits must not be negative")
	case c.MaxValueBytes < 1:
		return fmt.Errorf("max value bytes must be positive")
	case c.MaxPendingWrites < 1:
		return fmt.Errorf("max pending writes must be positive")
	case c.MaxConcurrentBackups < 1:
		return fmt.Errorf("max concurrent backups must be positive")
	case c.SnapshotThreshold < 1 || c.SnapshotInterval < 5*time.Millisecond:
		return fmt.Errorf("snapshot threshold must be at least 1 and snapshot interval at least 5ms")
	case c.JoinTimeout <= 0:
		return fmt.Errorf("join timeout must be positive")
	case c.BootstrapWait < 0:
		return fmt.Errorf("bootstrap wait must not be negative")
	case c.IdempotencyWindow < 0 || (c.IdempotencyWindow > 0 && c.IdempotencyWindow < time.Second):
		return fmt.Errorf("idempotency window %s: at least 1s (0 for the default)", c.IdempotencyWindow)
	case (c.PeerServerTLS == nil) != (c.PeerClientTLS == nil):
		return fmt.Errorf("peer TLS needs both the server and the client config")
	}
	if c.Txn != (TxnConfig{}) {
		return c.Txn.Validate()
	}
	return nil
}

// raftConfig builds the hashicorp/raft config of one group.
func (c *Config) raftConfig(logger hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	// With nothing new to send, a leader still sends every follower an
	// append every CommitTimeout (randomised up to 2x) to carry the commit
	// index, reading the log store each time; at raft's 50 ms that was most
	// of an idle node's work. Under load every append carries it anyway, so
	// a longer interval only delays when an idle follower learns that the
	// last write committed (what stale reads and /readyz see).
	rc.CommitTimeout = max(c.HeartbeatTimeout/5, 5*time.Millisecond)
	rc.Logger = logger
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	// A node removed from a group stops that group's raft; the process keeps
	// serving what it still hosts until the operator stops it.
	rc.ShutdownOnRemove = true
	// Proposals queue in a buffered channel (MaxAppendEntries deep) rather
	// than each waiting for the leader loop to take it: the loop then
	// drains them into one append, one store transaction and one fsync.
	rc.BatchApplyCh = true
	// raft reports each append and heartbeat to a follower twice: with a
	// peer_id label and again under a name holding the peer's ID. Only the
	// labelled one is exported (and costs a summary update per append).
	rc.NoLegacyTelemetry = true
	return rc
}
