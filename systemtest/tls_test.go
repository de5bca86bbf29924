package systemtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/certs"
	"github.com/raftkv/raftkv/internal/nodeproc"
)

// TestTLSClusterServesOverHTTPSAndRefusesAForeignNode runs three nodes with
// a CA of their own: mutual TLS on the raft port and HTTPS with client
// certificates on the API. Writes and reads through every node work, which
// takes forwarding to the shard leaders over mutual TLS. A fourth node that
// holds a certificate of another CA, though it trusts the cluster's CA and
// asks to join through https, is refused: it never becomes a member, and
// the cluster keeps serving. Neither a plain HTTP client, a client without
// a certificate, nor a foreign certificate on the raft port gets anywhere.
func TestTLSClusterServesOverHTTPSAndRefusesAForeignNode(t *testing.T) {
	skipShort(t)
	c := StartClusterWith(t, Config{Nodes: 3, Shards: 2, TLS: true})
	ctx := t.Context()

	// Every node takes writes and answers linearizable reads of every
	// other node's writes; each node leads at most some of the groups, so
	// the rest were forwarded to their leaders over the raft port.
	clients := map[string]*client.Client{}
	for _, n := range c.Nodes {
		clients[n.ID] = tlsClient(t, n)
	}
	var keys []string
	for _, n := range c.Nodes {
		for i := range 6 {
			key := fmt.Sprintf("tls/%s/%d", n.ID, i)
			if _, err := clients[n.ID].Put(ctx, key, []byte("v-"+key)); err != nil {
				t.Fatalf("put %s through %s over https: %v", key, n.ID, err)
			}
			keys = append(keys, key)
		}
	}
	for _, n := range c.Nodes {
		for _, key := range keys {
			v, err := clients[n.ID].Get(ctx, key)
			if err != nil || string(v.Value) != "v-"+key {
				t.Fatalf("get %s through %s over https: %q, %v", key, n.ID, v.Value, err)
			}
		}
	}

	// The API port speaks only TLS, and only to clients with a certificate.
	if r, err := Do(c.Nodes[0], http.MethodGet, KeyPath(keys[0]), nil); err == nil && r.Status == http.StatusOK {
		t.Errorf("plain HTTP to the HTTPS port answered 200: %s", r)
	}
	anonymous, err := certs.ClientTLS(c.Nodes[0].TLS.CA, "", "")
	mustOK(t, err)
	if _, err := client.New([]string{c.Nodes[0].HTTPAddr}, client.WithTLS(anonymous), client.WithTimeout(5*time.Second)).Get(ctx, keys[0]); err == nil {
		t.Errorf("a client without a certificate read %s", keys[0])
	}

	// The raft port refuses a node certificate of another CA.
	foreign := foreignTLS(t, "node4", c.Nodes[0].TLS.CA)
	if err := dialRaftPort(c.Nodes[0].RaftAddr, foreign); err == nil || !strings.Contains(err.Error(), "remote error: tls") {
		t.Errorf("raft port with a foreign certificate: %v, want the server's TLS alert", err)
	}

	before, err := c.Nodes[0].Status(ctx)
	mustOK(t, err)

	// node4 trusts the cluster's CA for the join, but its own certificate
	// is foreign: its https join request never gets past the handshake.
	n4 := c.AddNode("node4")
	mustOK(t, n4.PickPorts())
	n4.TLS = foreign
	n4.Join = []string{c.Nodes[0].BaseURL()}
	mustOK(t, n4.StartFreshUnanswered())
	mustOK(t, WaitFor(30*time.Second, func() error {
		log, _ := os.ReadFile(n4.LogPath)
		refused := 0
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "cannot reach join address yet") && strings.Contains(line, "tls:") {
				refused++
			}
		}
		if refused < 3 {
			return fmt.Errorf("node4's log shows %d refused join attempts, want 3", refused)
		}
		return nil
	}))

	// The cluster serves on, with its membership as it was.
	for _, n := range c.Nodes[:3] {
		if _, err := clients[n.ID].Put(ctx, "tls/after/"+n.ID, []byte("still")); err != nil {
			t.Errorf("put through %s while node4 knocks: %v", n.ID, err)
		}
		st, err := n.Status(ctx)
		mustOK(t, err)
		for _, m := range st.Nodes {
			if m.ID == "node4" {
				t.Errorf("%s's registry lists node4: %+v", n.ID, m)
			}
		}
		for _, g := range st.Groups {
			if slices.Contains(g.Voters, "node4") || slices.Contains(g.Nonvoters, "node4") {
				t.Errorf("%s sees node4 in %s: voters %v nonvoters %v", n.ID, g.Name, g.Voters, g.Nonvoters)
			}
			if bg, ok := before.Group(g.Name); ok && !sameMembers(bg.Voters, g.Voters) {
				t.Errorf("%s: voters of %s changed from %v to %v", n.ID, g.Name, bg.Voters, g.Voters)
			}
		}
	}
	mustOK(t, n4.Kill())
}

// tlsClient is a client of n's API with n's certificate and CA.
func tlsClient(t *testing.T, n *Node) *client.Client {
	t.Helper()
	cfg, err := n.TLS.ClientTLS()
	mustOK(t, err)
	return client.New([]string{n.HTTPAddr}, client.WithTLS(cfg), client.WithTimeout(RequestTimeout))
}

// foreignTLS makes a CA that is not the cluster's and a certificate of it
// for id; the node that holds it trusts clusterCA for its join.
func foreignTLS(t *testing.T, id, clusterCA string) *nodeproc.TLSFiles {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "foreign-certs")
	mustOK(t, certs.InitCA(dir, false))
	mustOK(t, certs.IssueNode(dir, id, nil, false))
	cert, key := certs.NodeFiles(dir, id)
	return &nodeproc.TLSFiles{CA: filepath.Join(dir, certs.CAFile), Cert: cert, Key: key, JoinCA: clusterCA}
}

// dialRaftPort completes a TLS handshake with the raft port at addr as the
// holder of files, without checking the server, and reads. A server that
// accepts the certificate waits for a mux header (the read times out); one
// that refuses it sends an alert, which the read returns.
func dialRaftPort(addr string, files *nodeproc.TLSFiles) error {
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		return err
	}
	// GetClientCertificate, not Certificates: given Certificates that no
	// CA the server names signed, Go's client quietly sends none, and the
	// server would see "no certificate" rather than the foreign one.
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil },
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

func sameMembers(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
