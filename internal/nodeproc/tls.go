package nodeproc

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/raftkv/raftkv/internal/certs"
)

// TLSFiles are the certificate files of a node that runs with transport
// security: mutual TLS on the raft port, HTTPS on the API with client
// certificates required, and https joins.
type TLSFiles struct {
	// CA is the CA the node trusts: --peer-ca and --tls-client-ca, and the
	// roots the harness's probes verify the node's API with.
	CA string
	// Cert and Key are the node's certificate, used on both ports, for its
	// joins and for the harness's probes of it.
	Cert, Key string
	// JoinCA is --join-ca, the CA of the cluster the node joins; empty
	// means CA.
	JoinCA string
	// PeerOnly keeps the API on plain HTTP: the files serve only mutual
	// TLS on the raft port.
	PeerOnly bool
}

func (f *TLSFiles) args() []string {
	var a []string
	if !f.PeerOnly {
		a = append(a, "--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-client-ca", f.CA)
	}
	a = append(a, "--peer-tls-cert", f.Cert, "--peer-tls-key", f.Key, "--peer-ca", f.CA)
	if f.JoinCA != "" {
		a = append(a, "--join-ca", f.JoinCA)
	}
	return a
}

// ClientTLS is the config of a client of this node's API: it trusts CA and
// presents Cert.
func (f *TLSFiles) ClientTLS() (*tls.Config, error) {
	return certs.ClientTLS(f.CA, f.Cert, f.Key)
}

// CertDir is where a cluster started with Options.TLS keeps its CA and its
// nodes' certificates; "" without TLS.
func (c *Cluster) CertDir() string { return c.certDir }

// initTLS makes the cluster CA in Dir/certs.
func (c *Cluster) initTLS() error {
	c.certDir = filepath.Join(c.dir, "certs")
	if err := certs.InitCA(c.certDir, false); err != nil {
		return fmt.Errorf("nodeproc: %w", err)
	}
	return nil
}

// IssueTLS gives a certificate of the cluster CA to a node of a cluster
// started with Options.TLS, for 127.0.0.1 and localhost (for the raft port
// alone with Options.PeerTLSOnly).
func (c *Cluster) IssueTLS(id string) (*TLSFiles, error) {
	if c.certDir == "" {
		return nil, fmt.Errorf("nodeproc: cluster has no CA (Options.TLS is off)")
	}
	if err := certs.IssueNode(c.certDir, id, nil, true); err != nil {
		return nil, fmt.Errorf("nodeproc: %w", err)
	}
	cert, key := certs.NodeFiles(c.certDir, id)
	return &TLSFiles{CA: filepath.Join(c.certDir, certs.CAFile), Cert: cert, Key: key, PeerOnly: c.peerOnly}, nil
}

// scheme is how the node's API is reached.
func (n *Node) scheme() string {
	if n.TLS != nil && !n.TLS.PeerOnly {
		return "https"
	}
	return "http"
}

// BaseURL is the node's API as a URL: http://HTTPAddr, or https:// when
// the node's API runs with TLS.
func (n *Node) BaseURL() string { return n.scheme() + "://" + n.HTTPAddr }

// joinAddr is what another node passes as --join to join through this one:
// the bare address for plain HTTP, as always, and the https URL with TLS.
func (n *Node) joinAddr() string {
	if n.scheme() == "https" {
		return n.BaseURL()
	}
	return n.HTTPAddr
}

// probe returns the HTTP client of the harness's own requests to this node:
// the shared plaintext one, or one for the node's TLS files, made once per
// TLSFiles value.
func (n *Node) probe() (*http.Client, error) {
	if n.scheme() == "http" {
		return probeClient, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.probeFor == n.TLS && n.probeTLS != nil {
		return n.probeTLS, nil
	}
	cfg, err := n.TLS.ClientTLS()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.ID, err)
	}
	n.probeTLS = &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		TLSClientConfig:     cfg,
		TLSHandshakeTimeout: ProbeTimeout,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}}
	n.probeFor = n.TLS
	return n.probeTLS, nil
}
