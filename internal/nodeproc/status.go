package nodeproc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// get sends GET base+path with hc within ProbeTimeout (or ctx's deadline,
// if sooner), with token as its bearer token unless it is empty, and
// returns the body of a 200 answer. base is a URL such as http://addr.
func get(ctx context.Context, hc *http.Client, base, path, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", base, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s%s: reading body: %w", base, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s%s: %d %s", base, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, nil
}

// FetchStatus fetches and decodes GET /v1/cluster from the node at httpAddr
// over plain HTTP.
func FetchStatus(ctx context.Context, httpAddr string) (*Status, error) {
	return fetchStatus(ctx, probeClient, "http://"+httpAddr, "")
}

func fetchStatus(ctx context.Context, hc *http.Client, base, token string) (*Status, error) {
	b, err := get(ctx, hc, base, "/v1/cluster", token)
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s/v1/cluster: %w in %s", base, err, b)
	}
	st.Raw = b
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
func (n *Node) Live(ctx context.Context) error { return n.expect200(ctx, "/livez") }

// Ready returns nil when GET /readyz answers 200.
func (n *Node) Ready(ctx context.Context) error { return n.expect200(ctx, "/readyz") }

func (n *Node) expect200(ctx context.Context, path string) error {
	hc, err := n.probe()
	if err != nil {
		return err
	}
	if _, err := get(ctx, hc, n.BaseURL(), path, n.c.token); err != nil {
		return fmt.Errorf("%s: %w", n.ID, err)
	}
	return nil
}
