package main

import (
	"bytes"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/certs"
)

// makeCerts runs 'raftkv certs init' and 'raftkv certs node' for each name
// into a temp dir and returns it.
func makeCerts(t *testing.T, names ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if code, _, errOut := runCLI(t, "certs", "init", "--dir", dir); code != 0 {
		t.Fatalf("certs init: code %d, %s", code, errOut)
	}
	for _, n := range names {
		if code, _, errOut := runCLI(t, "certs", "node", "--dir", dir, "--name", n, "--hosts", "127.0.0.1,localhost"); code != 0 {
			t.Fatalf("certs node %s: code %d, %s", n, code, errOut)
		}
	}
	return dir
}

func TestCertsCommandsMakeACAAndNodeCertificates(t *testing.T) {
	dir := makeCerts(t, "node1")
	for _, f := range []string{"ca.pem", "ca-key.pem", "node1.pem", "node1-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after certs init and certs node: %v", err)
		}
	}
	cert, key := certs.NodeFiles(dir, "node1")
	if _, _, err := certs.PeerTLS(cert, key, filepath.Join(dir, certs.CAFile)); err != nil {
		t.Fatalf("the issued certificate does not load for the raft port: %v", err)
	}

	// Neither replaces what is there without --force.
	if code, _, errOut := runCLI(t, "certs", "init", "--dir", dir); code != 1 || !strings.Contains(errOut, "file exists") {
		t.Errorf("second certs init: code %d, stderr %q; want 1 and file exists", code, errOut)
	}
	if code, _, errOut := runCLI(t, "certs", "node", "--dir", dir, "--name", "node1"); code != 1 || !strings.Contains(errOut, "file exists") {
		t.Errorf("second certs node: code %d, stderr %q; want 1 and file exists", code, errOut)
	}
	if code, _, _ := runCLI(t, "certs", "node", "--dir", dir, "--name", "node1", "--force"); code != 0 {
		t.Errorf("certs node --force: code %d", code)
	}
	if code, _, errOut := runCLI(t, "certs", "node", "--dir", dir); code != 2 || !strings.Contains(errOut, "--dir and --name are required") {
		t.Errorf("certs node without --name: code %d, stderr %q", code, errOut)
	}
}

func TestServeRefusesTLSFlagsThatDoNotComeInTheirSets(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--peer-tls-cert", "n.pem"},
			"peer TLS needs all of --peer-tls-cert, --peer-tls-key and --peer-ca, or none: --peer-tls-cert given without --peer-tls-key, --peer-ca"},
		{[]string{"--peer-tls-cert", "n.pem", "--peer-tls-key", "n-key.pem"},
			"--peer-tls-cert, --peer-tls-key given without --peer-ca"},
		{[]string{"--peer-ca", "ca.pem"}, "--peer-ca given without --peer-tls-cert, --peer-tls-key"},
		{[]string{"--tls-cert", "n.pem"}, "--tls-cert and --tls-key must be given together"},
		{[]string{"--tls-client-ca", "ca.pem"}, "--tls-client-ca needs --tls-cert and --tls-key"},
		{[]string{"--join", "ftp://127.0.0.1:8080"}, `--join "ftp://127.0.0.1:8080": use host:port, http://host:port or https://host:port`},
		{[]string{"--join", "https://127.0.0.1"}, `--join "https://127.0.0.1": use host:port`},
	} {
		code, out, errOut := runCLI(t, append([]string{"serve", "--data-dir", t.TempDir()}, tc.args...)...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "Error: ") || !strings.Contains(errOut, tc.want) {
			t.Errorf("raftkv serve %s: code %d, stderr %q; want code 2 and %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

func TestServeJoinSchemeFollowsTheNodesOwnAPI(t *testing.T) {
	parse := func(args ...string) []string {
		t.Helper()
		var stderr bytes.Buffer
		sf, code, ok := parseServeFlags(append([]string{"--data-dir", t.TempDir()}, args...), io.Discard, &stderr)
		if !ok {
			t.Fatalf("serve %s: code %d, %s", strings.Join(args, " "), code, stderr.String())
		}
		return sf.cfg.Join
	}
	// A node serving plain HTTP joins over plain HTTP unless told https.
	got := parse("--join", "127.0.0.1:8080,http://127.0.0.1:8081,https://127.0.0.1:8082/")
	if want := "127.0.0.1:8080,127.0.0.1:8081,https://127.0.0.1:8082"; strings.Join(got, ",") != want {
		t.Errorf("join without --tls-cert = %q, want %q", got, want)
	}
	// A node serving HTTPS assumes its peers do too, unless told http.
	got = parse("--tls-cert", "n.pem", "--tls-key", "n-key.pem", "--join", "127.0.0.1:8080,http://127.0.0.1:8081")
	if want := "https://127.0.0.1:8080,127.0.0.1:8081"; strings.Join(got, ",") != want {
		t.Errorf("join with --tls-cert = %q, want %q", got, want)
	}
}

func TestServeLoadsTheCertificatesItIsGiven(t *testing.T) {
	dir := makeCerts(t, "node1")
	cert, key := certs.NodeFiles(dir, "node1")
	ca := filepath.Join(dir, certs.CAFile)
	sf, code, ok := parseServeFlags([]string{"--data-dir", t.TempDir(),
		"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca,
		"--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-ca", ca}, io.Discard, io.Discard)
	if !ok {
		t.Fatalf("parse: code %d", code)
	}
	if err := sf.loadTLS(); err != nil {
		t.Fatal(err)
	}
	if sf.httpTLS == nil || sf.cfg.PeerServerTLS == nil || sf.cfg.PeerClientTLS == nil || sf.cfg.JoinTLS == nil {
		t.Fatalf("configs: http %v, peer server %v, peer client %v, join %v",
			sf.httpTLS != nil, sf.cfg.PeerServerTLS != nil, sf.cfg.PeerClientTLS != nil, sf.cfg.JoinTLS != nil)
	}
	if sf.cfg.JoinTLS.RootCAs == nil || len(sf.cfg.JoinTLS.Certificates) != 1 {
		t.Fatalf("join client: --peer-ca as roots and the peer certificate expected, got %+v", sf.cfg.JoinTLS)
	}

	// A CA file that does not exist stops the node at startup, naming it.
	missing := filepath.Join(dir, "nope.pem")
	code, _, errOut := runCLI(t, "serve", "--data-dir", t.TempDir(), "--http-addr", deadAddr(t), "--raft-addr", deadAddr(t),
		"--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-ca", missing)
	if code != 1 || !strings.Contains(errOut, "peer TLS") || !strings.Contains(errOut, "no such file") {
		t.Fatalf("serve with a missing --peer-ca: code %d, stderr %q", code, errOut)
	}
}

func TestClientCommandsSpeakHTTPSWithTheClusterCA(t *testing.T) {
	dir := makeCerts(t, "node1", "client")
	cert, key := certs.NodeFiles(dir, "node1")
	ca := filepath.Join(dir, certs.CAFile)
	serverTLS, err := certs.ServerTLS(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeNode{id: "node1", data: map[string][]byte{}, revs: map[string]uint64{}}
	srv := httptest.NewUnstartedServer(fake)
	srv.TLS = serverTLS
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ep := strings.TrimPrefix(srv.URL, "https://")
	clientCert, clientKey := certs.NodeFiles(dir, "client")

	// A bare host:port means https once --ca-cert is given.
	tlsArgs := []string{"--endpoints", ep, "--ca-cert", ca, "--cert", clientCert, "--key", clientKey}
	if code, _, errOut := runCLI(t, append([]string{"put", "greeting", "hello"}, tlsArgs...)...); code != 0 {
		t.Fatalf("put over https: code %d, %s", code, errOut)
	}
	code, out, errOut := runCLI(t, append([]string{"get", "greeting"}, tlsArgs...)...)
	if code != 0 || !strings.Contains(out, "hello") {
		t.Fatalf("get over https: code %d, stdout %q, stderr %q", code, out, errOut)
	}

	// The same from the environment, with an https:// endpoint.
	t.Setenv("RAFTKV_CA_CERT", ca)
	t.Setenv("RAFTKV_CERT", clientCert)
	t.Setenv("RAFTKV_KEY", clientKey)
	if code, _, errOut := runCLI(t, "get", "greeting", "--endpoints", srv.URL); code != 0 {
		t.Fatalf("get with RAFTKV_CA_CERT/CERT/KEY: code %d, %s", code, errOut)
	}
	t.Setenv("RAFTKV_CERT", "")
	t.Setenv("RAFTKV_KEY", "")

	// A server that requires a client certificate refuses a client without one.
	if code, _, _ := runCLI(t, "get", "greeting", "--endpoints", ep, "--ca-cert", ca); code != 1 {
		t.Fatalf("get without a client certificate: code %d, want 1", code)
	}
	if code, _, errOut := runCLI(t, "get", "greeting", "--endpoints", ep, "--cert", clientCert); code != 2 ||
		!strings.Contains(errOut, "--cert and --key must be given together") {
		t.Fatalf("get with --cert alone: code %d, stderr %q", code, errOut)
	}
}
