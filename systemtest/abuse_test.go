package systemtest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/nodeproc"
	"github.com/raftkv/raftkv/registry"
	"github.com/raftkv/raftkv/rpc"
)

// abuseSecret is the bootstrap admin token of the abused cluster and the
// --join-token of its joining nodes.
const abuseSecret = "abuse-bootstrap-secret-0123456789"

// abuseSlots is the cluster's --max-concurrent-requests.
const abuseSlots = 8

// TestAbuseLeavesAnAuthenticatedMTLSClusterIntact runs three nodes with
// --auth and mutual TLS on the raft port, writes acknowledged keys, and then,
// while a well-behaved writer keeps writing with the admin token, abuses
// every node from a process that holds no cluster certificate:
//
//   - on the HTTP port: the old forged node-to-node calls (POST
//     /v1/internal/op), oversized headers and bodies, malformed JSON,
//     invalid escaped key paths, a slow-loris header, a flood past
//     --max-concurrent-requests, and requests with no token, a wrong token
//     and an expired one;
//   - on the raft port: random bytes, a plaintext mux header for the RPC
//     layer followed by forged calls (register a node1 with other addresses,
//     put on meta, txn-decide on shard-1), the same over TLS with a
//     self-signed and a foreign-CA certificate, and connections that send
//     nothing.
//
// Every refusal is the documented one, every well-behaved request succeeds
// (retried only on 503/429 with Retry-After), no node exits, the membership
// is exactly as before, every acknowledged key reads back, and after every
// node is stopped and restarted from its data dir the cluster converges
// with all of them still there.
func TestAbuseLeavesAnAuthenticatedMTLSClusterIntact(t *testing.T) {
	skipShort(t)
	c := startAbuseCluster(t)
	ctx := t.Context()
	acked := &ackedKeys{m: map[string]string{}}

	// 1. Acknowledged keys, through every node.
	for i := range 30 {
		n := c.Nodes[i%len(c.Nodes)]
		key, value := fmt.Sprintf("abuse/before/%02d", i), fmt.Sprintf("v%d-via-%s", i, n.ID)
		mustOK(t, wellBehavedPut(n, key, value))
		acked.add(key, value)
	}
	// A value is opaque: malformed JSON is stored as the bytes it is.
	mustOK(t, wellBehavedPut(c.Nodes[1], "abuse/malformed-json-value", `{"success":[{"op":`))
	acked.add("abuse/malformed-json-value", `{"success":[{"op":`)
	before := membership(t, c.Nodes[0])
	for _, n := range c.Nodes[1:] {
		if got := membership(t, n); got != before {
			t.Fatalf("%s's membership before the abuse:\n%s\nnode1's:\n%s", n.ID, got, before)
		}
	}

	// 2. A writer that behaves, running through all of the abuse.
	w := startAbuseWriter(c, acked)

	// Slow-loris headers and silent raft-port connections run while the
	// rest goes on; their outcome is checked at the end.
	var lorises, silent []*pendingClose
	for _, n := range c.Nodes {
		lorises = append(lorises, openSlowLoris(t, n))
		for range 16 {
			silent = append(silent, openSilent(t, n.RaftAddr))
		}
	}

	for _, n := range c.Nodes {
		abuseHTTPAuth(t, n)
		abuseHTTPInput(t, n)
		abuseRaftPort(t, c, n)
	}
	abuseExpiredToken(t, c)
	for _, n := range c.Nodes {
		abuseFlood(t, n)
	}

	// The slow-loris connections are cut by the HTTP server's header
	// timeout (10 s), the silent ones by the mux's (5 s).
	for _, p := range lorises {
		mustOK(t, p.wait(40*time.Second))
	}
	for _, p := range silent {
		mustOK(t, p.wait(30*time.Second))
	}

	// 3. The writer never failed, and wrote during the abuse.
	writes, err := w.stop()
	mustOK(t, err)
	if writes < 5 {
		t.Errorf("the well-behaved writer completed only %d writes during the abuse", writes)
	}
	t.Logf("well-behaved writer: %d acknowledged writes during the abuse", writes)

	checkIntact(t, c, before, acked)

	// After stopping and restarting every node from its data dir the
	// cluster converges and still holds every acknowledged key.
	for _, n := range c.Nodes {
		mustOK(t, n.Stop())
	}
	for _, n := range c.Nodes {
		mustOK(t, n.Restart())
	}
	mustOK(t, c.WaitConverged(ctx, ReadyTimeout))
	checkIntact(t, c, before, acked)
}

// startAbuseCluster starts three nodes with auth on, peer mutual TLS on the
// raft port (the API stays plain HTTP, so the bearer token is all that
// stands between a client and the data), small body limits and abuseSlots
// request slots.
func startAbuseCluster(t *testing.T) *Cluster {
	t.Helper()
	c, err := nodeproc.New(nodeproc.Options{Nodes: 3, Shards: 2, Bin: Binary, Dir: t.TempDir(),
		TLS: true, PeerTLSOnly: true, Token: abuseSecret, Logf: t.Logf,
		ExtraArgs: []string{
			"--auth", "--auth-bootstrap-token", abuseSecret, "--join-token", abuseSecret,
			"--max-concurrent-requests", strconv.Itoa(abuseSlots),
			"--max-value-bytes", "4096", "--txn-max-bytes", "4096",
		}})
	if err != nil {
		t.Fatalf("systemtest: %v", err)
	}
	t.Cleanup(func() { cleanup(t, c) })
	if err := c.Start(t.Context()); err != nil {
		t.Fatalf("%v", err)
	}
	return c
}

// adminAuth is the header pair of a request made with the admin token.
var adminAuth = []string{"Authorization", "Bearer " + abuseSecret}

// ackedKeys are the keys a node acknowledged, with their values.
type ackedKeys struct {
	mu sync.Mutex
	m  map[string]string
}

func (a *ackedKeys) add(key, value string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[key] = value
}

func (a *ackedKeys) snapshot() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.m)
}

// wellBehaved sends a request with the admin token that must be answered
// want. It is retried only when the node answers 503 or 429 with
// Retry-After, after waiting as long as that says, for up to a minute.
func wellBehaved(n *Node, method, path string, body []byte, want int) (*Response, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := Do(n, method, path, body, adminAuth...)
		if err != nil {
			return nil, fmt.Errorf("well-behaved %s %s via %s: %w", method, path, n.ID, err)
		}
		if r.Status == want {
			return r, nil
		}
		wait, err := strconv.Atoi(r.Header.Get("Retry-After"))
		busy := r.Status == http.StatusServiceUnavailable || r.Status == http.StatusTooManyRequests
		if !busy || err != nil || time.Now().After(deadline) {
			return r, fmt.Errorf("well-behaved %s %s via %s: %s (Retry-After %q), want %d",
				method, path, n.ID, r, r.Header.Get("Retry-After"), want)
		}
		time.Sleep(time.Duration(wait) * time.Second)
	}
}

func wellBehavedPut(n *Node, key, value string) error {
	_, err := wellBehaved(n, http.MethodPut, KeyPath(key), []byte(value), http.StatusOK)
	return err
}

func wellBehavedRead(n *Node, key, want string) error {
	r, err := wellBehaved(n, http.MethodGet, KeyPath(key), nil, http.StatusOK)
	if err != nil {
		return err
	}
	if string(r.Body) != want {
		return fmt.Errorf("GET %q via %s: %q, want %q", key, n.ID, r.Body, want)
	}
	return nil
}

// abuseWriter writes and reads back a key every 50 ms, through each node in
// turn, with the admin token.
type abuseWriter struct {
	done   chan struct{}
	exited chan struct{}
	writes int
	err    error
}

func startAbuseWriter(c *Cluster, acked *ackedKeys) *abuseWriter {
	w := &abuseWriter{done: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(w.exited)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-w.done:
				return
			case <-tick.C:
			}
			n := c.Nodes[i%len(c.Nodes)]
			key, value := fmt.Sprintf("abuse/during/%04d", i), fmt.Sprintf("w%d-via-%s", i, n.ID)
			if err := wellBehavedPut(n, key, value); err != nil {
				w.err = err
				return
			}
			acked.add(key, value)
			if err := wellBehavedRead(c.Nodes[(i+1)%len(c.Nodes)], key, value); err != nil {
				w.err = err
				return
			}
			w.writes++
		}
	}()
	return w
}

// stop ends the writer and returns how many writes it completed and the
// first failure it saw.
func (w *abuseWriter) stop() (int, error) {
	close(w.done)
	<-w.exited
	return w.writes, w.err
}

// membership describes the registry and every group's voters as n sees
// them, one sorted line each.
func membership(t *testing.T, n *Node) string {
	t.Helper()
	st, err := n.Status(t.Context())
	mustOK(t, err)
	var lines []string
	for _, m := range st.Nodes {
		lines = append(lines, fmt.Sprintf("node %s http=%s raft=%s", m.ID, m.HTTPAddr, m.RaftAddr))
	}
	for _, g := range st.Groups {
		v, nv := slices.Clone(g.Voters), slices.Clone(g.Nonvoters)
		slices.Sort(v)
		slices.Sort(nv)
		lines = append(lines, fmt.Sprintf("group %s voters=%v nonvoters=%v", g.Name, v, nv))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// checkIntact checks that every node runs with no crash in its log, sees
// the membership it saw before, reads every acknowledged key and none of
// the keys the forged calls tried to write.
func checkIntact(t *testing.T, c *Cluster, before string, acked *ackedKeys) {
	t.Helper()
	if running := c.Running(); len(running) != len(c.Nodes) {
		t.Fatalf("only %v of %v are running", ids(running), ids(c.Nodes))
	}
	for _, n := range c.Nodes {
		if bad := n.CrashLines(); bad != "" {
			t.Fatalf("%s log shows a crash:\n%s", n.ID, bad)
		}
		if got := membership(t, n); got != before {
			t.Errorf("%s's membership changed; now:\n%s\nbefore:\n%s", n.ID, got, before)
		}
	}
	keys := acked.snapshot()
	for _, n := range c.Nodes {
		for key, value := range keys {
			if err := wellBehavedRead(n, key, value); err != nil {
				t.Errorf("acknowledged key: %v", err)
			}
		}
		for _, key := range []string{"abuse/forged", "abuse/forged-http"} {
			if _, err := wellBehaved(n, http.MethodGet, KeyPath(key), nil, http.StatusNotFound); err != nil {
				t.Errorf("key of a forged call: %v", err)
			}
		}
	}
	t.Logf("%d acknowledged keys read back through each of %d nodes", len(keys), len(c.Nodes))
}

// abuseHTTPAuth sends n requests without a token, with a wrong one, and the
// old forged node-to-node calls.
func abuseHTTPAuth(t *testing.T, n *Node) {
	t.Helper()
	wrong := []string{"Authorization", "Bearer not-the-secret-at-all-0123456789"}
	for _, auth := range [][]string{nil, wrong, {"Authorization", abuseSecret}, {"Authorization", "Basic " + abuseSecret}} {
		what := fmt.Sprintf("via %s with Authorization %q", n.ID, strings.Join(auth, ": "))
		checkError(t, "GET key "+what, mustDo(t, n, http.MethodGet, KeyPath("abuse/before/00"), nil, auth...), http.StatusUnauthorized, "unauthenticated")
		checkError(t, "PUT key "+what, mustDo(t, n, http.MethodPut, KeyPath("abuse/forged"), []byte("x"), auth...), http.StatusUnauthorized, "unauthenticated")
		checkError(t, "GET /v1/cluster "+what, mustDo(t, n, http.MethodGet, "/v1/cluster", nil, auth...), http.StatusUnauthorized, "unauthenticated")
		checkError(t, "POST /v1/auth/tokens "+what, mustDo(t, n, http.MethodPost, "/v1/auth/tokens", []byte(`{"roles":["admin"]}`), auth...), http.StatusUnauthorized, "unauthenticated")
		checkError(t, "POST /v1/cluster/join "+what, mustDo(t, n, http.MethodPost, "/v1/cluster/join",
			[]byte(`{"id":"evil","http_addr":"127.0.0.1:1","raft_addr":"127.0.0.1:2"}`), auth...), http.StatusUnauthorized, "unauthenticated")
	}

	// The forged node-to-node calls of old: refused without a token, and
	// with the admin token there is no such endpoint on this port at all.
	forged := []string{
		`{"group":"meta","op":"put","args":{"key":"abuse/forged-http","value":"eA=="}}`,
		`{"group":"meta","op":"register","args":{"id":"node1","http_addr":"127.0.0.1:1","raft_addr":"127.0.0.1:2"}}`,
		`{"group":"meta","op":"add-member","args":{"id":"evil","addr":"127.0.0.1:2"}}`,
		`{"group":"shard-1","op":"remove-member","args":{"id":"node2"}}`,
		`{"group":"shard-1","op":"txn-decide","args":{"id":"","outcome":2,"participants":["shard-1"]}}`,
		`{"group":"shard-1","op":"txn-prepare","args":{"cmd":{"id":""}}}`,
	}
	for _, body := range forged {
		what := "forged POST /v1/internal/op " + body + " via " + n.ID
		checkError(t, what+" without a token", mustDo(t, n, http.MethodPost, "/v1/internal/op", []byte(body), "Content-Type", "application/json"), http.StatusUnauthorized, "unauthenticated")
		checkError(t, what+" with a wrong token", mustDo(t, n, http.MethodPost, "/v1/internal/op", []byte(body), wrong...), http.StatusUnauthorized, "unauthenticated")
		checkError(t, what+" with the admin token", mustDo(t, n, http.MethodPost, "/v1/internal/op", []byte(body), adminAuth...), http.StatusNotFound, "not_found")
	}
}

// abuseHTTPInput sends n oversized and malformed requests, with the admin
// token so that they get past authentication to the limits and parsers.
func abuseHTTPInput(t *testing.T, n *Node) {
	t.Helper()
	admin := func(method, path string, body []byte, headers ...string) *Response {
		t.Helper()
		return mustDo(t, n, method, path, body, append(slices.Clone(adminAuth), headers...)...)
	}
	if r := admin(http.MethodGet, KeyPath("abuse/before/00"), nil, "X-Padding", strings.Repeat("p", 128<<10)); r.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("128 KiB of headers via %s: %s, want 431", n.ID, r)
	}
	checkError(t, "PUT of 8 KiB over --max-value-bytes 4096 via "+n.ID, admin(http.MethodPut, KeyPath("abuse/forged"), []byte(strings.Repeat("x", 8<<10))), http.StatusRequestEntityTooLarge, "too_large")
	checkError(t, "PUT of 2 MiB without a token via "+n.ID, mustDo(t, n, http.MethodPut, KeyPath("abuse/forged"), []byte(strings.Repeat("x", 2<<20))), http.StatusUnauthorized, "unauthenticated")
	bigTxn := `{"success":[{"op":"put","key":"abuse/forged","value":"` + strings.Repeat("x", 64<<10) + `"}]}`
	checkError(t, "txn body of 64 KiB via "+n.ID, admin(http.MethodPost, "/v1/txn", []byte(bigTxn)), http.StatusRequestEntityTooLarge, "too_large")
	checkError(t, "join body of 100 KiB via "+n.ID, admin(http.MethodPost, "/v1/cluster/join", []byte(`{"id":"`+strings.Repeat("n", 100<<10)+`"}`)), http.StatusRequestEntityTooLarge, "too_large")

	for path, body := range map[string]string{
		"/v1/txn":                         `{"success":[{"op":"put","key":"abuse/forged",`,
		"/v1/auth/tokens":                 `{"roles":["admin"],"ttl":`,
		"/v1/cluster/join":                `{"id":"evil",`,
		"/v1/cluster/leave":               `[1,2,3]`,
		"/v1/cluster/transfer-leadership": `nope`,
	} {
		checkError(t, "malformed JSON to "+path+" via "+n.ID, admin(http.MethodPost, path, []byte(body), "Content-Type", "application/json"), http.StatusBadRequest, "bad_request")
	}
	checkError(t, "txn with an unknown field via "+n.ID, admin(http.MethodPost, "/v1/txn", []byte(`{"success":[{"op":"put","key":"abuse/forged","value":"x"}],"evil":1}`)), http.StatusBadRequest, "bad_request")
	checkError(t, "PUT with ?timeout=forever via "+n.ID, admin(http.MethodPut, KeyPath("abuse/forged")+"?timeout=forever", []byte("x")), http.StatusBadRequest, "bad_request")
	checkError(t, "PUT of a key that is not UTF-8 via "+n.ID, admin(http.MethodPut, "/v1/kv/abuse%FF%FEforged", []byte("x")), http.StatusBadRequest, "bad_request")

	// Escapes that do not decode at all cannot be written with net/http's
	// client; they go on the wire as they are.
	for _, target := range []string{"/v1/kv/abuse%zzforged", "/v1/kv/abuse%", "/v1/kv/%%%", "/v1/kv/abuse\x01forged"} {
		status, err := rawRequest(n.HTTPAddr, "PUT "+target+" HTTP/1.1\r\nHost: raftkv\r\nAuthorization: Bearer "+abuseSecret+
			"\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx")
		if err != nil || status != http.StatusBadRequest {
			t.Errorf("PUT %q via %s: status %d, %v; want 400", target, n.ID, status, err)
		}
	}
}

// rawRequest writes req to a new connection to addr and returns the status
// of the answer.
func rawRequest(addr, req string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(RequestTimeout))
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// abuseExpiredToken makes an admin token that lives one second and checks
// that every node refuses it once it has expired.
func abuseExpiredToken(t *testing.T, c *Cluster) {
	t.Helper()
	r, err := wellBehaved(c.Nodes[0], http.MethodPost, "/v1/auth/tokens", []byte(`{"roles":["admin"],"ttl":"1s","description":"abuse: expires at once"}`), http.StatusOK)
	mustOK(t, err)
	var tok cluster.NewToken
	if err := json.Unmarshal(r.Body, &tok); err != nil || tok.Secret == "" || tok.ID == "" {
		t.Fatalf("POST /v1/auth/tokens: %v in %s", err, r.Body)
	}
	for _, n := range c.Nodes {
		mustOK(t, WaitFor(30*time.Second, func() error {
			r := mustDo(t, n, http.MethodGet, KeyPath("abuse/before/00"), nil, "Authorization", "Bearer "+tok.Secret)
			if r.Status != http.StatusUnauthorized {
				return fmt.Errorf("token %s, 1 s old or more, still gets %s via %s", tok.ID, r, n.ID)
			}
			return nil
		}))
		checkError(t, "expired token via "+n.ID, mustDo(t, n, http.MethodPut, KeyPath("abuse/forged"), []byte("x"), "Authorization", "Bearer "+tok.Secret), http.StatusUnauthorized, "unauthenticated")
	}
}

// abuseFlood takes every request slot of n with uploads that never finish
// and then floods it: every request past the limit is answered at once,
// 503 with Retry-After. Closing the uploads frees the slots.
func abuseFlood(t *testing.T, n *Node) {
	t.Helper()
	var held []net.Conn
	defer func() {
		for _, conn := range held {
			conn.Close()
		}
	}()
	// The writer and the harness use slots too, so uploads are added until
	// the node refuses a request.
	mustOK(t, WaitFor(30*time.Second, func() error {
		r := mustDo(t, n, http.MethodGet, KeyPath("abuse/flood-probe"), nil, adminAuth...)
		if r.Status == http.StatusServiceUnavailable {
			return nil
		}
		if len(held) >= 3*abuseSlots {
			return fmt.Errorf("%d unfinished uploads and %s still answers %s", len(held), n.ID, r)
		}
		conn, err := net.DialTimeout("tcp", n.HTTPAddr, 5*time.Second)
		if err != nil {
			return err
		}
		held = append(held, conn)
		fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: raftkv\r\nAuthorization: Bearer %s\r\nContent-Length: 10\r\n\r\nab",
			KeyPath(fmt.Sprintf("abuse/held-%d", len(held))), abuseSecret)
		return fmt.Errorf("%s answered %s with %d uploads held", n.ID, r, len(held))
	}))

	const flood = 48
	answers := make([]*Response, flood)
	errs := make([]error, flood)
	var wg sync.WaitGroup
	for i := range flood {
		wg.Go(func() {
			auth := adminAuth
			if i%2 == 1 {
				auth = nil // half of the flood has no token at all
			}
			answers[i], errs[i] = Do(n, http.MethodGet, KeyPath(fmt.Sprintf("abuse/flood-%d", i)), nil, auth...)
		})
	}
	wg.Wait()
	refused := 0
	for i, r := range answers {
		switch {
		case errs[i] != nil:
			t.Errorf("flood request %d to %s was not answered: %v", i, n.ID, errs[i])
		case r.Status == http.StatusServiceUnavailable:
			refused++
			checkError(t, "flood past --max-concurrent-requests via "+n.ID, r, http.StatusServiceUnavailable, "unavailable")
			if r.Header.Get("Retry-After") != "1" {
				t.Errorf("503 past the limit via %s has Retry-After %q, want 1", n.ID, r.Header.Get("Retry-After"))
			}
		case r.Status == http.StatusNotFound && i%2 == 0, r.Status == http.StatusUnauthorized && i%2 == 1:
			// a slot the writer had just given back
		default:
			t.Errorf("flood request %d to %s: %s", i, n.ID, r)
		}
	}
	if refused < flood/2 {
		t.Errorf("%s refused only %d of %d requests with every slot held", n.ID, refused, flood)
	}
	mustOK(t, n.Live(t.Context()))
	for _, conn := range held {
		conn.Close()
	}
	held = nil
	mustOK(t, WaitFor(10*time.Second, func() error {
		if r := mustDo(t, n, http.MethodGet, KeyPath("abuse/flood-probe"), nil, adminAuth...); r.Status != http.StatusNotFound {
			return fmt.Errorf("%s after the flood: %s", n.ID, r)
		}
		return nil
	}))
}

// pendingClose is a connection the server should close on its own.
type pendingClose struct {
	what string
	conn net.Conn
}

// wait returns nil once the server has closed the connection, an error if
// it is still open after d.
func (p *pendingClose) wait(d time.Duration) error {
	defer p.conn.Close()
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, p.conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%s: still open after %s", p.what, d)
	}
	return nil
}

// openSlowLoris starts a request to n's API and stops in its headers.
func openSlowLoris(t *testing.T, n *Node) *pendingClose {
	t.Helper()
	conn, err := net.DialTimeout("tcp", n.HTTPAddr, 5*time.Second)
	mustOK(t, err)
	_, err = io.WriteString(conn, "GET /v1/kv/abuse HTTP/1.1\r\nHost: raftkv\r\nX-Slow: ")
	mustOK(t, err)
	return &pendingClose{what: "slow-loris header to " + n.ID, conn: conn}
}

// openSilent opens a connection to a raft port and sends nothing.
func openSilent(t *testing.T, addr string) *pendingClose {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	mustOK(t, err)
	return &pendingClose{what: "silent connection to raft port " + addr, conn: conn}
}

// abuseRaftPort talks to n's raft port without a cluster certificate.
func abuseRaftPort(t *testing.T, c *Cluster, n *Node) {
	t.Helper()
	// Random bytes: the port closes the connection.
	conn, err := net.DialTimeout("tcp", n.RaftAddr, 5*time.Second)
	mustOK(t, err)
	junk := make([]byte, 4096)
	_, _ = rand.Read(junk)
	_, _ = conn.Write(junk) // the server may close before reading it all
	mustOK(t, (&pendingClose{what: "random bytes to the raft port of " + n.ID, conn: conn}).wait(20*time.Second))

	// Forged calls after a plaintext mux header, and over TLS with
	// certificates the cluster does not trust (or none).
	selfSigned := selfSignedCert(t)
	foreign := foreignTLS(t, "node1", c.Nodes[0].TLS.CA)
	foreignPair, err := tls.LoadX509KeyPair(foreign.Cert, foreign.Key)
	mustOK(t, err)
	// GetClientCertificate presents the certificate even though it is not
	// of a CA the server asks for (crypto/tls would otherwise send none).
	present := func(cert tls.Certificate) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
	}
	dialers := map[string]*tls.Config{
		"plaintext":      nil,
		"self-signed":    present(selfSigned),
		"foreign CA":     present(foreignPair),
		"no certificate": {MinVersion: tls.VersionTLS12, InsecureSkipVerify: true},
	}
	for how, cfg := range dialers {
		for _, req := range forgedRPCs(t, c) {
			what := fmt.Sprintf("forged rpc %s on %s to %s (%s)", req.Op, req.Group, n.ID, how)
			if err := forgeRPC(n.RaftAddr, cfg, req); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
	}
}

// forgedRPCs are node-to-node calls no outsider may make: node1
// registered with addresses of the attacker's, a write to meta, adding a
// voter, a write to a shard, a transaction with an empty id prepared and
// decided, and a ping, which any node that let the call in would answer.
func forgedRPCs(t *testing.T, c *Cluster) []rpc.Request {
	t.Helper()
	marshal := func(v any) []byte {
		b, err := rpc.Marshal(v)
		mustOK(t, err)
		return b
	}
	hijack := registry.Node{ID: c.Nodes[0].ID, HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	return []rpc.Request{
		{Group: "meta", Op: "register", Args: marshal(hijack)},
		{Group: "meta", Op: "put", Args: marshal(map[string]any{"key": "abuse/forged", "value": []byte("x")})},
		{Group: "shard-1", Op: "put", Args: marshal(map[string]any{"key": "abuse/forged", "value": []byte("x")})},
		{Group: "meta", Op: "add-member", Args: marshal(map[string]any{"id": "evil", "addr": "127.0.0.1:2"})},
		{Group: "shard-1", Op: "txn-decide", Args: marshal(map[string]any{"id": "", "outcome": fsm.OutcomeSuccess, "participants": []string{"shard-1"}})},
		{Group: "shard-1", Op: "txn-prepare", Args: marshal(map[string]any{"cmd": fsm.TxnCmd{}})},
		// Answered by any node, leader or not, that lets the call through.
		{Group: "meta", Op: "ping", Args: marshal(struct{}{})},
	}
}

// forgeRPC sends req to the raft port at addr after the RPC layer's mux
// header, in the clear (cfg nil) or over TLS with cfg. It returns nil when
// the call fails without any answer from the RPC layer: the port did not
// let it through.
func forgeRPC(addr string, cfg *tls.Config, req rpc.Request) error {
	dial := func(addr string, timeout time.Duration) (net.Conn, error) {
		conn, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		_ = conn.SetDeadline(time.Now().Add(timeout))
		if cfg != nil {
			tc := tls.Client(conn, cfg)
			if err := tc.Handshake(); err != nil {
				conn.Close()
				return nil, err
			}
			conn = tc
		}
		header := append([]byte{'R', 'K', 'V', 'M', 1, byte(len(cluster.RPCLayer))}, cluster.RPCLayer...)
		if _, err := conn.Write(header); err != nil {
			conn.Close()
			return nil, err
		}
		_ = conn.SetDeadline(time.Time{})
		return conn, nil
	}
	cl := rpc.NewClient(rpc.ClientConfig{Dial: dial, DialTimeout: 5 * time.Second})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := cl.Call(ctx, addr, req)
	var remote *rpc.RemoteError
	switch {
	case err == nil:
		return fmt.Errorf("the node ran it: reply from %s", resp.Node)
	case errors.As(err, &remote):
		return fmt.Errorf("the RPC layer answered it: %v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer and no close within 15 s: %v", err)
	}
	return nil
}

// selfSignedCert makes a certificate signed by its own key.
func selfSignedCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mustOK(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "node1"},
		DNSNames:     []string{"node1", "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	mustOK(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
