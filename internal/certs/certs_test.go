package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newCA makes a CA in a fresh directory and returns the directory.
func newCA(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := InitCA(dir, false); err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	return dir
}

// newNode issues a node certificate in dir and returns its files.
func newNode(t *testing.T, dir, name string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	if err := IssueNode(dir, name, hosts, false); err != nil {
		t.Fatalf("IssueNode(%s): %v", name, err)
	}
	return NodeFiles(dir, name)
}

func peerTLS(t *testing.T, dir, name string) (server, client *tls.Config) {
	t.Helper()
	certFile, keyFile := NodeFiles(dir, name)
	server, client, err := PeerTLS(certFile, keyFile, filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatalf("PeerTLS(%s): %v", name, err)
	}
	return server, client
}

// exchange runs one TLS connection over 127.0.0.1: the server handshakes
// and writes a byte, the client dials addr's port under serverName (empty:
// the IP) and reads it. It returns each side's error. Under TLS 1.3 a
// client learns that the server refused its certificate only on that read.
func exchange(t *testing.T, server, client *tls.Config, serverName string) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, server)
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = tc.Write([]byte{'k'})
		done <- err
	}()

	clientErr = func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		cfg := client.Clone()
		if serverName != "" {
			cfg.ServerName = serverName
		} else if !cfg.InsecureSkipVerify {
			cfg.ServerName = "127.0.0.1"
		}
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			return err
		}
		_, err = tc.Read(make([]byte, 1))
		return err
	}()
	return <-done, clientErr
}

func TestIssuedCertificatesLoadAndCarryWhatNodesNeed(t *testing.T) {
	dir := newCA(t)
	certFile, keyFile := newNode(t, dir, "node1")

	for _, f := range []string{filepath.Join(dir, CAKeyFile), keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}

	ca, err := readCertificates(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if c := ca[0]; !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 || c.NotAfter.Before(time.Now().Add(9*365*24*time.Hour)) {
		t.Errorf("CA: IsCA=%v usage=%v until %v", c.IsCA, c.KeyUsage, c.NotAfter)
	}
	leaf, err := readCertificates(certFile)
	if err != nil {
		t.Fatal(err)
	}
	node := leaf[0]
	if len(node.ExtKeyUsage) != 2 || node.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || node.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("node ext key usage %v, want server and client auth", node.ExtKeyUsage)
	}
	if got := len(node.IPAddresses); got != 2 || node.DNSNames[0] != "localhost" {
		t.Errorf("default SANs: IPs %v, names %v", node.IPAddresses, node.DNSNames)
	}
	if d := time.Until(node.NotAfter); d < 360*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("node certificate valid for %v more, want about a year", d)
	}

	if _, _, err := PeerTLS(certFile, keyFile, filepath.Join(dir, CAFile)); err != nil {
		t.Errorf("PeerTLS: %v", err)
	}
	if _, err := ServerTLS(certFile, keyFile, filepath.Join(dir, CAFile)); err != nil {
		t.Errorf("ServerTLS: %v", err)
	}
	if _, err := ClientTLS(filepath.Join(dir, CAFile), certFile, keyFile); err != nil {
		t.Errorf("ClientTLS: %v", err)
	}
}

func TestHostsBecomeIPAndDNSNames(t *testing.T) {
	dir := newCA(t)
	certFile, _ := newNode(t, dir, "node2", "10.0.0.2", "node2.example", "fd00::2")
	c, err := readCertificates(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(c[0].IPAddresses) != 2 || len(c[0].DNSNames) != 1 || c[0].DNSNames[0] != "node2.example" {
		t.Fatalf("IPs %v, names %v", c[0].IPAddresses, c[0].DNSNames)
	}
}

func TestNodesOfOneCATalkEvenWhenTheAddressIsNotInTheCertificate(t *testing.T) {
	dir := newCA(t)
	newNode(t, dir, "node1")
	newNode(t, dir, "node2", "node2.example") // no 127.0.0.1 SAN
	server, _ := peerTLS(t, dir, "node2")
	_, client := peerTLS(t, dir, "node1")
	if serr, cerr := exchange(t, server, client, ""); serr != nil || cerr != nil {
		t.Fatalf("server: %v; client: %v", serr, cerr)
	}
}

func TestACertificateFromAnotherCAIsRefusedEitherWay(t *testing.T) {
	ours, theirs := newCA(t), newCA(t)
	newNode(t, ours, "node1")
	newNode(t, theirs, "intruder")
	ourServer, ourClient := peerTLS(t, ours, "node1")
	intruderServer, intruderClient := peerTLS(t, theirs, "intruder")
	// The intruder knows our CA (ca.pem is no secret) and trusts it, but
	// its own certificate comes from elsewhere. It presents it even though
	// the server asks for certificates from our CA only.
	theirClient := presenting(ourClient, intruderClient.Certificates[0])
	theirServer := ourServer.Clone()
	theirServer.Certificates = intruderServer.Certificates

	t.Run("foreign client", func(t *testing.T) {
		serr, cerr := exchange(t, ourServer, theirClient, "")
		if serr == nil || !strings.Contains(serr.Error(), "unknown authority") {
			t.Errorf("server accepted a foreign client: %v", serr)
		}
		if cerr == nil {
			t.Error("foreign client was served")
		}
	})
	t.Run("foreign server", func(t *testing.T) {
		serr, cerr := exchange(t, theirServer, ourClient, "")
		if cerr == nil || !strings.Contains(cerr.Error(), "unknown authority") {
			t.Errorf("client accepted a foreign server: %v", cerr)
		}
		if serr == nil {
			t.Error("foreign server completed the handshake")
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		anon := ourClient.Clone()
		anon.Certificates = nil
		if serr, _ := exchange(t, ourServer, anon, ""); serr == nil {
			t.Error("server accepted a client without a certificate")
		}
	})
}

// presenting returns a copy of client that offers cert whatever the server
// asks for, as a client that is not a crypto/tls client might.
func presenting(client *tls.Config, cert tls.Certificate) *tls.Config {
	c := client.Clone()
	c.Certificates = nil
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return c
}

func TestAnExpiredPeerCertificateIsRefused(t *testing.T) {
	dir := t.TempDir()
	long := time.Now().Add(-2 * nodeValidity)
	if err := initCA(dir, false, long.Add(-time.Hour), time.Now().Add(caValidity)); err != nil {
		t.Fatal(err)
	}
	if err := issueNode(dir, "old", nil, false, long, long.Add(nodeValidity)); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := NodeFiles(dir, "old")

	// A node refuses to start with it ...
	_, _, err := PeerTLS(certFile, keyFile, filepath.Join(dir, CAFile))
	if !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), certFile) {
		t.Errorf("PeerTLS with an expired certificate: %v", err)
	}
	// ... and a peer presenting it is refused.
	old, err := readCertificates(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := loadPool(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyPeer(old, pool, time.Now()); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("verifyPeer accepted an expired certificate: %v", err)
	}
	if err := verifyPeer(old, pool, long.Add(time.Hour)); err != nil {
		t.Errorf("verifyPeer within the validity period: %v", err)
	}
}

func TestExistingFilesAreKeptUnlessForced(t *testing.T) {
	dir := newCA(t)
	newNode(t, dir, "node1")
	caBefore, _ := os.ReadFile(filepath.Join(dir, CAFile))

	if err := InitCA(dir, false); !errors.Is(err, ErrExists) {
		t.Errorf("second InitCA: %v, want ErrExists", err)
	}
	if err := IssueNode(dir, "node1", nil, false); !errors.Is(err, ErrExists) {
		t.Errorf("second IssueNode: %v, want ErrExists", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, CAFile)); string(after) != string(caBefore) {
		t.Fatal("a refused InitCA changed ca.pem")
	}
	if err := IssueNode(dir, "node1", nil, true); err != nil {
		t.Errorf("forced IssueNode: %v", err)
	}
	if err := InitCA(dir, true); err != nil {
		t.Errorf("forced InitCA: %v", err)
	}
	// node1 was signed by the CA just replaced.
	certFile, keyFile := NodeFiles(dir, "node1")
	if _, _, err := PeerTLS(certFile, keyFile, filepath.Join(dir, CAFile)); !errors.Is(err, ErrNotSignedByCA) {
		t.Errorf("PeerTLS after a new CA: %v, want ErrNotSignedByCA", err)
	}
}

func TestNodeNamesThatCannotBeFilesAreRefused(t *testing.T) {
	dir := newCA(t)
	for _, name := range []string{"", "ca", "../x", "a/b", ".hidden", "node1-key", "sp ace"} {
		if err := IssueNode(dir, name, nil, false); !errors.Is(err, ErrBadName) {
			t.Errorf("IssueNode(%q): %v, want ErrBadName", name, err)
		}
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := newCA(t)
	certFile, keyFile := newNode(t, dir, "node1")
	_, otherKey := newNode(t, dir, "node2")
	caFile := filepath.Join(dir, CAFile)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	cases := []struct {
		name          string
		cert, key, ca string
		want          error // nil: only the file name is checked
		mentions      string
	}{
		{"missing certificate", missing, keyFile, caFile, os.ErrNotExist, missing},
		{"missing key", certFile, missing, caFile, os.ErrNotExist, missing},
		{"missing CA", certFile, keyFile, missing, os.ErrNotExist, missing},
		{"certificate not PEM", garbage, keyFile, caFile, ErrNoPEM, garbage},
		{"key not PEM", certFile, garbage, caFile, ErrNoPEM, garbage},
		{"CA not PEM", certFile, keyFile, garbage, ErrNoPEM, garbage},
		{"another node's key", certFile, otherKey, caFile, ErrKeyMismatch, otherKey},
		{"no CA given", certFile, keyFile, "", nil, "no CA certificate file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := PeerTLS(tc.cert, tc.key, tc.ca)
			if err == nil {
				t.Fatal("PeerTLS succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("err = %q does not mention %s", err, tc.mentions)
			}
		})
	}

	if err := os.Chmod(keyFile, 0); err == nil && os.Getuid() != 0 {
		if _, err := ServerTLS(certFile, keyFile, ""); !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), keyFile) {
			t.Errorf("unreadable key: %v", err)
		}
	}
	if _, err := ClientTLS(caFile, certFile, ""); err == nil {
		t.Error("ClientTLS took a certificate without its key")
	}
}

func TestClientAPI(t *testing.T) {
	dir := newCA(t)
	certFile, keyFile := newNode(t, dir, "node1")
	clientCert, clientKey := newNode(t, dir, "cli")
	caFile := filepath.Join(dir, CAFile)

	open, err := ServerTLS(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	mutual, err := ServerTLS(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	anon, err := ClientTLS(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	withCert, err := ClientTLS(caFile, clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a client without a certificate reaches a server that asks for none", func(t *testing.T) {
		if serr, cerr := exchange(t, open, anon, ""); serr != nil || cerr != nil {
			t.Fatalf("server: %v; client: %v", serr, cerr)
		}
	})
	t.Run("a server with a client CA refuses a client without a certificate", func(t *testing.T) {
		if serr, _ := exchange(t, mutual, anon, ""); serr == nil {
			t.Fatal("served a client without a certificate")
		}
	})
	t.Run("a server with a client CA serves a client with one", func(t *testing.T) {
		if serr, cerr := exchange(t, mutual, withCert, ""); serr != nil || cerr != nil {
			t.Fatalf("server: %v; client: %v", serr, cerr)
		}
	})
	t.Run("the client checks the host name", func(t *testing.T) {
		if _, cerr := exchange(t, open, anon, "node9.example"); cerr == nil || !strings.Contains(cerr.Error(), "node9.example") {
			t.Fatalf("client accepted a certificate for another host: %v", cerr)
		}
		if _, cerr := exchange(t, open, anon, "localhost"); cerr != nil {
			t.Fatalf("localhost is a default SAN: %v", cerr)
		}
	})
}
