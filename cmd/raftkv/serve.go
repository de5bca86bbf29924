package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	runtimepprof "runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/internal/certs"
)

// shutdownGrace bounds how long in-flight requests may take after a signal.
const shutdownGrace = 10 * time.Second

// stuckShutdown is when a stop that has not finished dumps its goroutines.
const stuckShutdown = 20 * time.Second

var serveHelp = cmdHelpText{
	usage:   "raftkv serve [flags]",
	summary: "run a raftkv node",
	description: `Runs a raftkv node. With an empty data dir and no --join it bootstraps a new
single-node cluster; with --join it asks an existing cluster to add it; with
state in the data dir it restarts from that state (--join and --shards are
then ignored). Every flag can also be set as RAFTKV_<FLAG> in the environment
(upper case, dashes as underscores), e.g. RAFTKV_HTTP_ADDR=127.0.0.1:8081; a
flag on the command line wins.

Transport security (docs/security.md): --tls-cert and --tls-key serve the
HTTP API over HTTPS, and --tls-client-ca also requires client certificates
signed by that CA. --peer-tls-cert, --peer-tls-key and --peer-ca, all three
or none, put mutual TLS on the raft port: only nodes holding a certificate of
the cluster CA may then send raft traffic or node-to-node calls. Make the
files with 'raftkv certs'.

A --join address is host:port, http://host:port or https://host:port. A bare
host:port means https when this node serves its own API over TLS
(--tls-cert), plain http otherwise. An https join address is verified with
--join-ca (default --peer-ca), and this node presents its peer certificate
(or, without one, its --tls-cert) to a cluster that requires client
certificates.`,
	examples: []string{
		"raftkv serve",
		"raftkv serve --id node2 --data-dir ./n2 --http-addr 127.0.0.1:8081 --raft-addr 127.0.0.1:7001 --join 127.0.0.1:8080",
		"raftkv serve --id node2 --data-dir ./n2 --http-addr 127.0.0.1:8081 --raft-addr 127.0.0.1:7001 " +
			"--tls-cert certs/node2.pem --tls-key certs/node2-key.pem " +
			"--peer-tls-cert certs/node2.pem --peer-tls-key certs/node2-key.pem --peer-ca certs/ca.pem " +
			"--join https://127.0.0.1:8080",
	},
}

type serveFlags struct {
	cfg                          cluster.Config
	httpAddr, raftAddr           string
	advertiseHTTP, advertiseRaft string
	join                         string
	logLevel                     string
	pprof                        bool
	raftMetrics                  bool
	http                         httpapi.ServerLimits

	// Transport security: file names from the flags, then (loadTLS) the
	// config of the HTTP API; the peer and join configs go into cfg.
	tlsCert, tlsKey, tlsClientCA string
	peerCert, peerKey, peerCA    string
	joinCA                       string
	httpTLS                      *tls.Config
}

// parseServeFlags parses serve's arguments. ok is false when serve must
// stop and exit with code: after --help (0) or a usage error (2).
func parseServeFlags(args []string, stdout, stderr io.Writer) (sf *serveFlags, code int, ok bool) {
	sf = &serveFlags{cfg: cluster.DefaultConfig(), http: httpapi.DefaultServerLimits()}
	cmd := newCommand("serve", serveHelp, stdout, stderr)
	cmd.envAll = true
	fs := cmd.fs
	c := &sf.cfg
	fs.StringVar(&c.NodeID, "id", c.NodeID, "node id, unique in the cluster and stable across restarts")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the raft logs, checkpoints and node.json")
	fs.StringVar(&sf.httpAddr, "http-addr", c.HTTPAddr, "address the HTTP API listens on")
	fs.StringVar(&sf.raftAddr, "raft-addr", c.RaftAddr, "address the raft port listens on (all groups share it)")
	fs.StringVar(&sf.advertiseHTTP, "advertise-http", "", "HTTP address peers and clients should use (default: --http-addr)")
	fs.StringVar(&sf.advertiseRaft, "advertise-raft", "", "raft address peers should dial (default: --raft-addr)")
	fs.IntVar(&c.Shards, "shards", c.Shards, "number of data shards (only used when bootstrapping a new cluster)")
	fs.StringVar(&sf.join, "join", "", "comma-separated HTTP `ADDRS` of existing members to join through")
	fs.DurationVar(&c.BootstrapWait, "bootstrap-wait", c.BootstrapWait, "with an empty data dir and no --join: how long to listen for a cluster that still lists this node (its data dir was wiped) before bootstrapping a new one; one that dials it stops the start")
	fs.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", c.HeartbeatTimeout, "raft heartbeat timeout: a follower that hears nothing for this long (randomised up to 2x) starts an election")
	fs.DurationVar(&c.ElectionTimeout, "election-timeout", c.ElectionTimeout, "raft election timeout (at least the heartbeat timeout)")
	fs.DurationVar(&c.LeaderLeaseTimeout, "leader-lease-timeout", c.LeaderLeaseTimeout, "a leader that cannot reach a quorum for this long steps down (at most the heartbeat timeout)")
	fs.IntVar(&c.MaxPendingWrites, "max-pending-writes", c.MaxPendingWrites, "writes a group's leader holds in flight before it answers 429 with Retry-After")
	fs.Uint64Var(&c.SnapshotThreshold, "snapshot-threshold", c.SnapshotThreshold, "take a checkpoint of a group after this many new log entries")
	fs.DurationVar(&c.SnapshotInterval, "snapshot-interval", c.SnapshotInterval, "how often each group checks whether a checkpoint is due")
	fs.Uint64Var(&c.TrailingLogs, "trailing-logs", c.TrailingLogs, "log entries kept after a checkpoint, so slightly lagging followers catch up from the log")
	fs.DurationVar(&c.BalanceInterval, "balance-interval", c.BalanceInterval, "how often a node hands a group's leadership to a voter leading two or more fewer groups (0: never)")
	fs.DurationVar(&c.DeadNodeTimeout, "dead-node-timeout", c.DeadNodeTimeout, "remove from every group a node unreachable for this long, unless that would cost the cluster its quorum (0: never)")
	fs.IntVar(&c.Txn.MaxOps, "txn-max-ops", c.Txn.MaxOps, "most compares plus ops in one transaction")
	fs.IntVar(&c.Txn.MaxBytes, "txn-max-bytes", c.Txn.MaxBytes, "most key plus value bytes in one transaction")
	fs.DurationVar(&c.Txn.RecoveryTimeout, "txn-recovery-timeout", c.Txn.RecoveryTimeout, "age at which a shard leader finishes a transaction whose coordinator went quiet")
	fs.DurationVar(&c.Txn.Retention, "txn-retention", c.Txn.Retention, "how long decided transaction records stay readable via GET /v1/txn/{id}")
	fs.DurationVar(&c.IdempotencyWindow, "idempotency-window", c.IdempotencyWindow, "how long a shard remembers an Idempotency-Key and its write's first answer (at least 1s); a retry within it gets that answer, after it the write applies again")
	fs.IntVar(&c.MaxValueBytes, "max-value-bytes", c.MaxValueBytes, "largest value accepted, in bytes")
	fs.IntVar(&c.WatchHistory.Changes, "watch-history-changes", fsm.DefaultHistoryLimits().Changes, "key changes each shard replica keeps in memory for watches to resume from")
	fs.IntVar(&c.WatchHistory.Bytes, "watch-history-bytes", fsm.DefaultHistoryLimits().Bytes, "bytes of keys and values each shard replica keeps in memory for watches to resume from")
	fs.StringVar(&sf.tlsCert, "tls-cert", "", "certificate `FILE` of the HTTP API; with --tls-key it serves HTTPS")
	fs.StringVar(&sf.tlsKey, "tls-key", "", "private key `FILE` of --tls-cert")
	fs.StringVar(&sf.tlsClientCA, "tls-client-ca", "", "CA `FILE`: require HTTP API clients to present a certificate it signed")
	fs.StringVar(&sf.peerCert, "peer-tls-cert", "", "node certificate `FILE` for mutual TLS on the raft port (with --peer-tls-key and --peer-ca)")
	fs.StringVar(&sf.peerKey, "peer-tls-key", "", "private key `FILE` of --peer-tls-cert")
	fs.StringVar(&sf.peerCA, "peer-ca", "", "cluster CA `FILE`: peers on the raft port must hold a certificate it signed")
	fs.StringVar(&sf.joinCA, "join-ca", "", "CA `FILE` that verifies https --join addresses (default: --peer-ca)")
	fs.IntVar(&sf.http.MaxConcurrentRequests, "max-concurrent-requests", sf.http.MaxConcurrentRequests, "requests served at once; past that a request is answered 503 with Retry-After at once (/livez, /readyz, /metrics are never refused)")
	fs.BoolVar(&c.Auth, "auth", false, "require a bearer token with a role that allows it on every client request (docs/security.md)")
	fs.StringVar(&c.BootstrapToken, "auth-bootstrap-token", "", "with --auth: the secret of an admin token stored as id \"bootstrap\" (at least 16 bytes; prefer RAFTKV_AUTH_BOOTSTRAP_TOKEN). Without it a new cluster prints a random one once")
	fs.StringVar(&c.JoinToken, "join-token", "", "admin token sent to the --join addresses when the cluster runs with --auth (prefer RAFTKV_JOIN_TOKEN)")
	fs.IntVar(&c.MaxConcurrentBackups, "max-concurrent-backups", c.MaxConcurrentBackups, "backups staged on this node's disk at once; past that GET /v1/backup is answered 429 with Retry-After")
	fs.StringVar(&sf.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.BoolVar(&sf.pprof, "pprof", false, "serve Go profiling endpoints under /debug/pprof/ on the HTTP address")
	fs.BoolVar(&sf.raftMetrics, "raft-metrics", true, "export hashicorp/raft's own metrics (raft_*) on /metrics next to raftkv's")
	cmd.check(func() error {
		c.HTTPAddr = firstNonEmpty(sf.advertiseHTTP, sf.httpAddr)
		c.RaftAddr = firstNonEmpty(sf.advertiseRaft, sf.raftAddr)
		c.RaftBind = sf.raftAddr
		for _, a := range []string{c.HTTPAddr, c.RaftAddr} {
			if host, _, err := net.SplitHostPort(a); err != nil || host == "" || net.ParseIP(host).IsUnspecified() {
				return fmt.Errorf("address %q cannot be dialled by peers: give a host:port, or set --advertise-http/--advertise-raft", a)
			}
		}
		if err := sf.checkTLSFlags(); err != nil {
			return err
		}
		for _, a := range strings.Split(sf.join, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addr, err := sf.joinAddr(a)
				if err != nil {
					return err
				}
				c.Join = append(c.Join, addr)
			}
		}
		sf.http.MaxTxnBytes = c.Txn.MaxBytes
		if err := sf.http.Validate(); err != nil {
			return err
		}
		return c.Validate()
	})
	pos, code, ok := cmd.parse(args)
	if !ok {
		return nil, code, false
	}
	if len(pos) > 0 {
		return nil, cmd.usageError("unexpected argument %q", pos[0]), false
	}
	return sf, 0, true
}

// checkTLSFlags checks that the TLS flags come in their sets; the files are
// read later, by loadTLS.
func (sf *serveFlags) checkTLSFlags() error {
	if (sf.tlsCert == "") != (sf.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key must be given together")
	}
	if sf.tlsClientCA != "" && sf.tlsCert == "" {
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates are checked only over HTTPS")
	}
	peer := map[string]string{"--peer-tls-cert": sf.peerCert, "--peer-tls-key": sf.peerKey, "--peer-ca": sf.peerCA}
	var given, missing []string
	for _, name := range []string{"--peer-tls-cert", "--peer-tls-key", "--peer-ca"} {
		if peer[name] != "" {
			given = append(given, name)
		} else {
			missing = append(missing, name)
		}
	}
	if len(given) > 0 && len(missing) > 0 {
		return fmt.Errorf("peer TLS needs all of --peer-tls-cert, --peer-tls-key and --peer-ca, or none: %s given without %s",
			strings.Join(given, ", "), strings.Join(missing, ", "))
	}
	return nil
}

// joinAddr turns one --join entry into what cluster.Config.Join holds: a
// bare host:port for plain HTTP, an https:// URL for TLS. A bare host:port
// means https when this node serves its own API over TLS: the members of a
// cluster run the same configuration.
func (sf *serveFlags) joinAddr(a string) (string, error) {
	scheme, hostPort, hasScheme := strings.Cut(a, "://")
	if !hasScheme {
		scheme, hostPort = "http", a
		if sf.tlsCert != "" {
			scheme = "https"
		}
	}
	hostPort = strings.TrimRight(hostPort, "/")
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("--join %q: use host:port, http://host:port or https://host:port", a)
	}
	if host, port, err := net.SplitHostPort(hostPort); err != nil || host == "" || port == "" {
		return "", fmt.Errorf("--join %q: use host:port, http://host:port or https://host:port", a)
	}
	if scheme == "http" {
		return hostPort, nil
	}
	return "https://" + hostPort, nil
}

// loadTLS reads the certificate files named by the flags: the HTTP API's
// config into sf.httpTLS, the raft port's and the join client's into sf.cfg.
// A file that is missing, unreadable or does not fit its key or CA stops the
// node here, naming the file.
func (sf *serveFlags) loadTLS() error {
	if sf.tlsCert != "" {
		cfg, err := certs.ServerTLS(sf.tlsCert, sf.tlsKey, sf.tlsClientCA)
		if err != nil {
			return fmt.Errorf("client API TLS: %w", err)
		}
		sf.httpTLS = cfg
	}
	if sf.peerCert != "" {
		server, client, err := certs.PeerTLS(sf.peerCert, sf.peerKey, sf.peerCA)
		if err != nil {
			return fmt.Errorf("peer TLS: %w", err)
		}
		sf.cfg.PeerServerTLS, sf.cfg.PeerClientTLS = server, client
	}
	// The join client presents the node's cluster certificate, the one that
	// says it is a node, and falls back to its API certificate.
	joinCA := firstNonEmpty(sf.joinCA, sf.peerCA)
	cert, key := sf.peerCert, sf.peerKey
	if cert == "" {
		cert, key = sf.tlsCert, sf.tlsKey
	}
	if joinCA != "" || cert != "" {
		cfg, err := certs.ClientTLS(joinCA, cert, key)
		if err != nil {
			return fmt.Errorf("join TLS: %w", err)
		}
		sf.cfg.JoinTLS = cfg
	}
	return nil
}

// warnPlaintext says which ports carry traffic in the clear: at Info for a
// loopback address, where only this machine can listen in, and at Warn
// otherwise.
func (sf *serveFlags) warnPlaintext(logger hclog.Logger) {
	say := func(addr, msg string, args ...any) {
		args = append([]any{"addr", addr}, args...)
		if host, _, err := net.SplitHostPort(addr); err == nil && (host == "localhost" || net.ParseIP(host).IsLoopback()) {
			logger.Info(msg, args...)
			return
		}
		logger.Warn(msg, args...)
	}
	if sf.httpTLS == nil {
		say(sf.httpAddr, "client traffic is unencrypted: the HTTP API serves plain HTTP", "fix", "--tls-cert and --tls-key")
	}
	if sf.cfg.PeerServerTLS == nil {
		say(sf.raftAddr, "raft port traffic is unencrypted and unauthenticated: anyone who reaches it is trusted as a node",
			"fix", "--peer-tls-cert, --peer-tls-key and --peer-ca")
		if sf.cfg.Auth {
			// Tokens guard the HTTP port; a node-to-node call on the raft
			// port carries no token of its own.
			logger.Warn("--auth without peer TLS: whoever reaches the raft port can bypass the tokens", "addr", sf.raftAddr,
				"fix", "--peer-tls-cert, --peer-tls-key and --peer-ca")
		}
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// runServe runs a node until SIGINT or SIGTERM, then stops it in order:
// stop accepting HTTP and finish in-flight requests (bounded), then shut
// every raft group down and close the stores. Exit code 0 on a clean stop.
func runServe(args []string, stdout, stderr io.Writer) int {
	sf, code, ok := parseServeFlags(args, stdout, stderr)
	if !ok {
		return code
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raftkv", Level: hclog.LevelFromString(sf.logLevel), Output: stderr})
	sf.cfg.Logger = logger
	sf.cfg.OnBootstrapToken = func(secret string) {
		// Printed once, straight to the terminal and never to the log: the
		// cluster keeps only its hash.
		fmt.Fprintf(stderr, "\n=== raftkv: auth is on and this is a new cluster. Its admin token (shown once):\n\n    %s\n\n"+
			"Use it with --token or RAFTKV_TOKEN; make narrower tokens with 'raftkv auth create-token'. ===\n\n", secret)
	}
	if !sf.cfg.Auth {
		logger.Info("auth is off: anyone who reaches the HTTP port may read and write every key (--auth turns it on)")
	}
	if err := sf.loadTLS(); err != nil {
		logger.Error("raftkv cannot start", "error", err)
		return 1
	}
	sf.warnPlaintext(logger)
	if err := serve(sf, logger); err != nil {
		logger.Error("raftkv stopped with an error", "error", err)
		return 1
	}
	return 0
}

func serve(sf *serveFlags, logger hclog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Bind the HTTP port first so a clash fails before any state is made.
	ln, err := net.Listen("tcp", sf.httpAddr)
	if err != nil {
		return fmt.Errorf("http port: %w", err)
	}
	node, err := cluster.New(ctx, sf.cfg)
	if err != nil {
		ln.Close()
		return err
	}
	opts := []httpapi.Option{httpapi.WithLimits(sf.http)}
	if sf.raftMetrics {
		opt, err := httpapi.WithRaftMetrics()
		if err != nil {
			node.Close()
			ln.Close()
			return err
		}
		opts = append(opts, opt)
	}
	api := httpapi.New(node, opts...)
	var handler http.Handler = api
	if sf.pprof {
		handler = withPprof(handler)
	}
	srv := &http.Server{Handler: handler}
	sf.http.Configure(srv)
	srv.RegisterOnShutdown(api.EndStreams)
	serveErr := make(chan error, 1)
	if sf.httpTLS != nil {
		srv.TLSConfig = sf.httpTLS
		go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { serveErr <- srv.Serve(ln) }()
	}
	logger.Info("raftkv node serving", "id", sf.cfg.NodeID, "http", sf.cfg.HTTPAddr, "raft", sf.cfg.RaftAddr, "data_dir", sf.cfg.DataDir,
		"http_tls", sf.httpTLS != nil, "client_certs", sf.tlsClientCA != "", "peer_tls", sf.cfg.PeerServerTLS != nil)

	select {
	case <-ctx.Done():
		logger.Info("signal received; shutting down")
	case err = <-serveErr:
		logger.Error("http server failed", "error", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	// Hand leadership over while still serving, so requests keep being
	// answered (by the new leaders) instead of waiting out an election.
	started := time.Now()
	// A stop that hangs is a bug; leave the evidence in the log before the
	// supervisor's SIGKILL erases it.
	stuck := time.AfterFunc(stuckShutdown, func() {
		logger.Error("shutdown is taking too long; goroutines follow", "after", stuckShutdown)
		_ = runtimepprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
	})
	defer stuck.Stop()
	node.HandOffLeadership(shutdownCtx)
	logger.Info("leaderships handed over", "ms", time.Since(started).Milliseconds())
	if e := srv.Shutdown(shutdownCtx); e != nil {
		logger.Warn("in-flight requests cut off at the grace period", "error", e)
	}
	logger.Info("http requests drained", "ms", time.Since(started).Milliseconds())
	if e := node.Close(); e != nil && err == nil {
		err = e
	}
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		logger.Info("raftkv stopped cleanly")
		return nil
	}
	return err
}

// withPprof serves net/http/pprof under /debug/pprof/ and everything else
// through h.
func withPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	return mux
}
