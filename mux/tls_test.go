package mux

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/certs"
)

// testCA makes a cluster CA and returns a function issuing the mux configs
// of one node under it.
func testCA(t *testing.T) func(node string) (server, client *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	if err := certs.InitCA(dir, false); err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	return func(node string) (*tls.Config, *tls.Config) {
		t.Helper()
		if err := certs.IssueNode(dir, node, nil, false); err != nil {
			t.Fatalf("IssueNode(%s): %v", node, err)
		}
		certFile, keyFile := certs.NodeFiles(dir, node)
		server, client, err := certs.PeerTLS(certFile, keyFile, filepath.Join(dir, certs.CAFile))
		if err != nil {
			t.Fatalf("PeerTLS(%s): %v", node, err)
		}
		return server, client
	}
}

func newTLSMux(t *testing.T, server, client *tls.Config, headerTimeout time.Duration, out io.Writer) *Mux {
	t.Helper()
	if out == nil {
		out = io.Discard
	}
	m, err := ListenConfig(Config{
		Bind:          "127.0.0.1:0",
		Logger:        hclog.New(&hclog.LoggerOptions{Output: out, Level: hclog.Debug}),
		ServerTLS:     server,
		ClientTLS:     client,
		HeaderTimeout: headerTimeout,
	})
	if err != nil {
		t.Fatalf("ListenConfig: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// expectNoAccept fails if l hands out a connection within a short while.
func expectNoAccept(t *testing.T, accepted <-chan net.Conn) {
	t.Helper()
	select {
	case c, ok := <-accepted:
		if ok {
			_ = c.Close()
			t.Fatal("a refused connection reached the layer")
		}
	case <-time.After(200 * time.Millisecond):
	}
}

// expectServed checks that the mux still hands a good peer's connection to
// its layer and carries data both ways.
func expectServed(t *testing.T, from, to *Layer, toMux *Mux) {
	t.Helper()
	expectServedVia(t, from, acceptAsync(to), toMux)
}

// expectServedVia is expectServed with an Accept already waiting.
func expectServedVia(t *testing.T, from *Layer, accepted <-chan net.Conn, toMux *Mux) {
	t.Helper()
	c := dial(t, from, toMux.Addr())
	s := waitConn(t, accepted, "good peer")
	writeLine(t, c, "ping")
	if got := readLine(t, s); got != "ping" {
		t.Fatalf("server got %q", got)
	}
	writeLine(t, s, "pong")
	if got := readLine(t, c); got != "pong" {
		t.Fatalf("client got %q", got)
	}
}

func TestNodesOfOneCAExchangeDataOverTLS(t *testing.T) {
	issue := testCA(t)
	sa, ca := issue("node1")
	sb, cb := issue("node2")
	a := newTLSMux(t, sa, ca, 0, nil)
	b := newTLSMux(t, sb, cb, 0, nil)
	la, lb := newTestLayer(t, a, "shard-1"), newTestLayer(t, b, "shard-1")

	expectServed(t, la, lb, b)
	expectServed(t, lb, la, a)

	accepted := acceptAsync(lb)
	dial(t, la, b.Addr())
	in := waitConn(t, accepted, "a->b")
	if _, ok := in.(*watchedConn).Conn.(*tls.Conn); !ok {
		t.Fatalf("accepted connection is a %T, not TLS", in.(*watchedConn).Conn)
	}
}

func TestAPeerWithAForeignCertificateIsRefusedAndGoodPeersStillServed(t *testing.T) {
	ours, theirs := testCA(t), testCA(t)
	var logs syncBuffer
	s1, c1 := ours("node1")
	s2, c2 := ours("node2")
	server := newTLSMux(t, s1, c1, 0, &logs)
	good := newTLSMux(t, s2, c2, 0, nil)
	serverLayer, goodLayer := newTestLayer(t, server, "meta"), newTestLayer(t, good, "meta")

	// The intruder trusts our CA (ca.pem is no secret), so its side of the
	// handshake goes through; its own certificate comes from another CA,
	// and it presents it although the server asks for ours.
	is, ic := theirs("intruder")
	intruderClient := c1.Clone()
	intruderClient.Certificates = nil
	intruderClient.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &ic.Certificates[0], nil
	}
	intruder := newTestLayer(t, newTLSMux(t, is, intruderClient, 0, nil), "meta")
	anonClient := c1.Clone()
	anonClient.Certificates = nil
	anon := newTestLayer(t, newTLSMux(t, is, anonClient, 0, nil), "meta")

	for _, tc := range []struct {
		name   string
		dialer *Layer
		reason string
	}{
		{"foreign CA", intruder, "unknown authority"},
		{"no certificate", anon, "didn't provide a certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			accepted := acceptAsync(serverLayer)
			c, err := tc.dialer.Dial(raft.ServerAddress(server.Addr().String()), time.Second)
			if err == nil {
				// TLS 1.3: the refusal arrives after the client's handshake.
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(testWait))
				if _, err = c.Read(make([]byte, 1)); err == nil {
					t.Fatal("the refused dialler read data")
				}
			}
			expectNoAccept(t, accepted)
			waitFor(t, testWait, "the refusal in the log", func() bool {
				return strings.Contains(logs.String(), "TLS handshake failed")
			})
			line := lastLine(logs.String(), "TLS handshake failed")
			if !strings.Contains(line, "[WARN]") || !strings.Contains(line, "remote=127.0.0.1:") || !strings.Contains(line, tc.reason) {
				t.Fatalf("log line %q should be a Warn with the remote and %q", line, tc.reason)
			}
			expectServedVia(t, goodLayer, accepted, server)
		})
	}
}

func TestAPlaintextDialerIsRefusedByATLSMux(t *testing.T) {
	issue := testCA(t)
	var logs syncBuffer
	s1, c1 := issue("node1")
	m := newTLSMux(t, s1, c1, 0, &logs)
	l := newTestLayer(t, m, "meta")

	accepted := acceptAsync(l)
	plain := newTestLayer(t, newTestMux(t, defaultHeaderTimeout, nil), "meta")
	c := dial(t, plain, m.Addr()) // the header goes out in the clear
	writeLine(t, c, "hello")
	expectClosedByServer(t, c)
	expectNoAccept(t, accepted)
	waitFor(t, testWait, "the refusal in the log", func() bool {
		return strings.Contains(logs.String(), "the dialler has peer TLS off")
	})
	if line := lastLine(logs.String(), "TLS handshake failed"); !strings.Contains(line, "[WARN]") || !strings.Contains(line, "remote=") {
		t.Fatalf("log line %q", line)
	}
}

func TestATLSDialerToAPlaintextMuxFailsCleanly(t *testing.T) {
	issue := testCA(t)
	var logs syncBuffer
	plain := newTestMux(t, defaultHeaderTimeout, &logs)
	plainLayer := newTestLayer(t, plain, "meta")
	s1, c1 := issue("node1")
	secure := newTestLayer(t, newTLSMux(t, s1, c1, 0, nil), "meta")

	accepted := acceptAsync(plainLayer)
	start := time.Now()
	// A dial that waited for its timeout, rather than ending when the
	// plaintext mux hung up, would take the whole 20 s.
	c, err := secure.Dial(raft.ServerAddress(plain.Addr().String()), 20*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("a TLS dial to a plaintext mux succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the failed dial took %v; it should end when the plaintext mux closes", d)
	}
	expectNoAccept(t, accepted)
	waitFor(t, testWait, "the plaintext mux to say why", func() bool {
		return strings.Contains(logs.String(), "the dialler has peer TLS on and this port does not")
	})
}

func TestTheHandshakeMustFinishWithinTheHeaderTimeout(t *testing.T) {
	issue := testCA(t)
	s1, c1 := issue("node1")
	m := newTLSMux(t, s1, c1, 200*time.Millisecond, nil)
	silent := rawDial(t, m) // connects, never starts the handshake
	start := time.Now()
	expectClosedByServer(t, silent)
	if d := time.Since(start); d >= defaultHeaderTimeout {
		t.Fatalf("a silent client was kept %v, past even the default header timeout", d)
	}
}

func TestProbingATLSMuxIsNotWarnedAbout(t *testing.T) {
	issue := testCA(t)
	var logs syncBuffer
	s1, c1 := issue("node1")
	m := newTLSMux(t, s1, c1, 0, &logs)
	if ProbeRefused(m.Addr().String(), time.Second) {
		t.Fatal("a listening TLS mux was probed as refusing")
	}
	waitFor(t, testWait, "the probe in the log", func() bool {
		return strings.Contains(logs.String(), "connection closed before its header")
	})
	if strings.Contains(logs.String(), "[WARN]") {
		t.Fatalf("a probe was warned about:\n%s", logs.String())
	}
}

func TestPeerGoneIsReportedOverTLS(t *testing.T) {
	issue := testCA(t)
	s1, c1 := issue("node1")
	s2, c2 := issue("node2")
	m := newTLSMux(t, s1, c1, 0, nil)
	gone := make(chan string, 4)
	m.OnPeerGone(func(group string) { gone <- group })
	server := newTestLayer(t, m, "shard-3")
	client := newTestLayer(t, newTLSMux(t, s2, c2, 0, nil), "shard-3")

	for _, tc := range []struct {
		name         string
		closeTheirs  bool
		wantReported bool
	}{
		{"the peer closes", true, true},
		{"we close", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			accepted := acceptAsync(server)
			out := dial(t, client, m.Addr())
			in := waitConn(t, accepted, "shard-3")
			read := make(chan error, 1)
			go func() {
				_, err := in.Read(make([]byte, 1))
				read <- err
			}()
			if tc.closeTheirs {
				_ = out.Close()
			} else {
				_ = in.Close()
			}
			<-read
			select {
			case g := <-gone:
				if !tc.wantReported || g != "shard-3" {
					t.Fatalf("reported %q, want reported=%v", g, tc.wantReported)
				}
			case <-time.After(200 * time.Millisecond):
				if tc.wantReported {
					t.Fatal("the peer's close was not reported")
				}
			}
		})
	}
}

func TestConnectionsBeyondThePendingLimitAreClosedAtOnce(t *testing.T) {
	var logs syncBuffer
	m, err := ListenConfig(Config{
		Bind:       "127.0.0.1:0",
		Logger:     hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug}),
		MaxPending: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	l := newTestLayer(t, m, "meta")

	s1, s2 := rawDial(t, m), rawDial(t, m) // silent, holding both slots
	waitFor(t, testWait, "two pending connections", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.mu.pending) == 2
	})
	start := time.Now()
	expectClosedByServer(t, rawDial(t, m))
	if d := time.Since(start); d >= defaultHeaderTimeout {
		t.Fatalf("the third connection was kept %v", d)
	}
	waitFor(t, testWait, "the refusal in the log", func() bool {
		return strings.Contains(logs.String(), "too many connections still handshaking")
	})

	// Once the silent ones go, a peer gets through again.
	_ = s1.Close()
	_ = s2.Close()
	waitFor(t, testWait, "the slots to free", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.mu.pending) == 0
	})
	expectServed(t, newTestLayer(t, newTestMux(t, defaultHeaderTimeout, nil), "meta"), l, m)
}

func TestConfigValidation(t *testing.T) {
	issue := testCA(t)
	server, client := issue("node1")
	lax := server.Clone()
	lax.ClientAuth = tls.VerifyClientCertIfGiven
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no bind", Config{}},
		{"server TLS alone", Config{Bind: "127.0.0.1:0", ServerTLS: server}},
		{"client TLS alone", Config{Bind: "127.0.0.1:0", ClientTLS: client}},
		{"client certificates optional", Config{Bind: "127.0.0.1:0", ServerTLS: lax, ClientTLS: client}},
		{"negative timeout", Config{Bind: "127.0.0.1:0", HeaderTimeout: -time.Second}},
	} {
		if m, err := ListenConfig(tc.cfg); !errors.Is(err, ErrBadConfig) {
			if m != nil {
				_ = m.Close()
			}
			t.Errorf("%s: err = %v, want ErrBadConfig", tc.name, err)
		}
	}
}

// lastLine returns the last line of logs containing substr.
func lastLine(logs, substr string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return lines[i]
		}
	}
	return ""
}
