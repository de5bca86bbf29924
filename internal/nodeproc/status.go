package nodeproc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/client"
)

// Status is the body of GET /v1/cluster as one node sees it. The types are
// the client package's: one decoder of that answer for the whole
// repository.
type (
	Status      = client.ClusterStatus
	GroupStatus = client.GroupStatus
	NodeInfo    = client.NodeInfo
)

// probeClient serves the harness's own requests (/livez, /readyz,
// /v1/cluster). Keep-alive connections to a killed node simply fail and are
// dropped by the transport.
var probeClient = &http.Client{Transport: &http.Transport{
	Proxy:               nil,
	DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
	MaxIdleConnsPerHost: 16,
	IdleConnTimeout:     30 * time.Second,
}}

// nodeClient is a client of the one node at base (a URL such as
// http://addr) over hc, with token as its bearer token unless it is empty.
func nodeClient(hc *http.Client, base, token string) *client.Client {
	return client.New([]string{base}, client.WithHTTPClient(hc), client.WithToken(token), client.WithUserAgent("raftkv-nodeproc"))
}

// FetchStatus fetches and decodes GET /v1/cluster from the node at httpAddr
// over plain HTTP.
func FetchStatus(ctx context.Context, httpAddr string) (*Status, error) {
	return fetchStatus(ctx, probeClient, "http://"+httpAddr, "")
}

// fetchStatus asks for the node's own view (no probes of the others)
// within ProbeTimeout, or ctx's deadline if sooner.
func fetchStatus(ctx context.Context, hc *http.Client, base, token string) (*Status, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	st, err := nodeClient(hc, base, token).Cluster(ctx, client.NoProbe())
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// Status fetches GET /v1/cluster from this node.
func (n *Node) Status(ctx context.Context) (*Status, error) {
	hc, err := n.probe()
	if err != nil {
		return nil, err
	}
	st, err := fetchStatus(ctx, hc, n.BaseURL(), n.c.token)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.ID, err)
	}
	return st, nil
}

// Live returns nil when GET /livez answers 200.
func (n *Node) Live(ctx context.Context) error { return n.probeWith(ctx, (*client.Client).Live) }

// Ready returns nil when GET /readyz answers 200.
func (n *Node) Ready(ctx context.Context) error { return n.probeWith(ctx, (*client.Client).Ready) }

// probeWith runs one of the client's health probes against this node within
// ProbeTimeout.
func (n *Node) probeWith(ctx context.Context, probe func(*client.Client, context.Context) error) error {
	hc, err := n.probe()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	if err := probe(nodeClient(hc, n.BaseURL(), n.c.token), ctx); err != nil {
		return fmt.Errorf("%s: %w", n.ID, err)
	}
	return nil
}
