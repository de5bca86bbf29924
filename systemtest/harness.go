// Package systemtest runs real `raftkv serve` processes on 127.0.0.1 and
// drives them over HTTP, the way an operator or a client program would.
//
// The processes are internal/nodeproc's; this file binds that harness to
// testing.TB (a cluster is closed by t.Cleanup, which fails the test on a
// crash in a node log and shows every log's tail when the test failed) and
// adds a few raw net/http helpers. The scenarios live in the _test.go files.
package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// Cluster and Node are the harness's: see internal/nodeproc.
type (
	Cluster = nodeproc.Cluster
	Node    = nodeproc.Node
)

const (
	// ReadyTimeout bounds how long a cluster may take to converge.
	ReadyTimeout = nodeproc.ConvergeTimeout
	// RequestTimeout is the client-side limit on any single request of Do.
	RequestTimeout = 20 * time.Second
	// logTailLines is how much of each node log is shown on failure.
	logTailLines = 80
)

// Binary is the raftkv executable that new clusters run. TestMain sets it
// with nodeproc.BuildBinary.
var Binary string

// Config describes a cluster to start.
type Config struct {
	// Nodes is how many nodes to run (node1..nodeN). node1 bootstraps.
	Nodes int
	// Shards is passed as --shards to the bootstrapping node.
	Shards int
	// ExtraArgs are added to every node's command line.
	ExtraArgs []string
	// TLS runs the cluster with transport security: a CA of its own, mutual
	// TLS on the raft port, HTTPS with client certificates on the API (see
	// nodeproc.Options.TLS).
	TLS bool
}

// StartCluster starts an n-node cluster with the given shard count and waits
// until every node is ready and a voter of every group.
func StartCluster(tb testing.TB, n, shards int) *Cluster {
	tb.Helper()
	return StartClusterWith(tb, Config{Nodes: n, Shards: shards})
}

// StartClusterWith is StartCluster with more options. The cluster is
// closed when the test ends: every process it started is killed by PID, a
// Go panic, fatal error or data race in a node log fails the test, and a
// failed test shows the tail of every node log.
func StartClusterWith(tb testing.TB, cfg Config) *Cluster {
	tb.Helper()
	if Binary == "" {
		tb.Fatalf("systemtest: Binary is not set; call nodeproc.BuildBinary first")
	}
	c, err := nodeproc.New(nodeproc.Options{Nodes: cfg.Nodes, Shards: cfg.Shards, Bin: Binary,
		Dir: tb.TempDir(), ExtraArgs: cfg.ExtraArgs, TLS: cfg.TLS, Logf: tb.Logf})
	if err != nil {
		tb.Fatalf("systemtest: %v", err)
	}
	// Registered after TempDir, so it runs before the directory is removed.
	tb.Cleanup(func() { cleanup(tb, c) })
	if err := c.Start(tb.Context()); err != nil {
		tb.Fatalf("%v", err)
	}
	return c
}

func cleanup(tb testing.TB, c *Cluster) {
	if err := c.Close(); err != nil {
		tb.Errorf("cleanup: %v", err)
	}
	for _, n := range c.Nodes {
		if bad := n.CrashLines(); bad != "" {
			tb.Errorf("%s log shows a crash:\n%s", n.ID, bad)
		}
	}
	if tb.Failed() {
		tb.Logf("\n%s", c.LogTails(logTailLines))
	}
}

// WaitFor calls cond until it returns nil or timeout passes, and then
// returns the last error it saw.
func WaitFor(timeout time.Duration, cond func() error) error {
	return nodeproc.WaitFor(context.Background(), timeout, cond)
}

// httpClient is shared by every request of Do.
var httpClient = &http.Client{
	Timeout: RequestTimeout,
	Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	},
}

// Response is a fully read HTTP response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *Response) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// Do sends one request to node n. headers are name, value pairs.
func Do(n *Node, method, pathAndQuery string, body []byte, headers ...string) (*Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+n.HTTPAddr+pathAndQuery, rd)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading body: %w", method, pathAndQuery, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// KeyPath returns /v1/kv/<escaped key>.
func KeyPath(key string) string {
	return "/v1/kv/" + url.PathEscape(key)
}
