package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Incarnations. A node's data dir gets a random incarnation id together with
// its raft state (node.json, `incarnation`); the registry records it when
// the node registers. Every raft connection opens with a hello naming the
// cluster, the group, the dialler and its incarnation, and the node and
// incarnation the dialler expects at that address (from its registry
// replica). The acceptor refuses the connection, with the reason, when any
// of them is not what it knows. A node whose data dir was wiped comes back
// with a new incarnation, so until the cluster has removed it from every
// group and recorded its new incarnation, no peer can ask it for a vote or
// hear one from it: it cannot help elect a leader that lacks writes it
// acknowledged before it lost them (DESIGN.md, "Wiped data dirs").

const (
	// helloMagic opens the hello. Its first byte can never open raft's own
	// traffic (an rpc type, 0..4), so a connection from a raftkv without
	// incarnations is told apart and accepted as before.
	helloMagic   = "RKVH"
	helloVersion = 1
	// helloTimeout bounds reading a hello and its answer.
	helloTimeout = 5 * time.Second
	// maxHelloField is the longest field a hello may carry (ids and
	// group names are at most 64 bytes).
	maxHelloField = 64
	maxVerdictLen = 1024

	verdictOK      = 0
	verdictRefused = 1
)

// hello is what a dialler says before any raft traffic.
type hello struct {
	Cluster string // the dialler's cluster id
	Group   string
	From    string // the dialler's node id
	FromInc string // and incarnation
	To      string // the node the dialler's registry lists at this address ("" if none)
	ToInc   string // and that node's recorded incarnation ("" if none or unknown)
}

func (h hello) fields() []string {
	return []string{h.Cluster, h.Group, h.From, h.FromInc, h.To, h.ToInc}
}

func (h hello) encode() []byte {
	b := append([]byte(helloMagic), helloVersion)
	for _, f := range h.fields() {
		b = append(b, byte(len(f)))
		b = append(b, f...)
	}
	return b
}

// readHello reads the hello after its first byte (already read).
func readHello(r io.Reader) (hello, error) {
	var fixed [len(helloMagic)]byte // rest of the magic, then the version
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return hello{}, fmt.Errorf("reading the hello: %w", err)
	}
	if string(fixed[:len(helloMagic)-1]) != helloMagic[1:] {
		return hello{}, fmt.Errorf("bad hello magic %q", fixed[:len(helloMagic)-1])
	}
	if v := fixed[len(helloMagic)-1]; v != helloVersion {
		return hello{}, fmt.Errorf("hello version %d, this build speaks %d", v, helloVersion)
	}
	var f [6]string
	for i := range f {
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return hello{}, fmt.Errorf("reading the hello: %w", err)
		}
		if n[0] > maxHelloField {
			return hello{}, fmt.Errorf("hello field of %d bytes", n[0])
		}
		buf := make([]byte, n[0])
		if _, err := io.ReadFull(r, buf); err != nil {
			return hello{}, fmt.Errorf("reading the hello: %w", err)
		}
		for _, c := range buf {
			if c <= ' ' || c > '~' {
				return hello{}, fmt.Errorf("hello field with byte 0x%02x", c)
			}
		}
		f[i] = string(buf)
	}
	return hello{Cluster: f[0], Group: f[1], From: f[2], FromInc: f[3], To: f[4], ToInc: f[5]}, nil
}

func writeVerdict(w io.Writer, refusal string) error {
	if refusal == "" {
		_, err := w.Write([]byte{verdictOK})
		return err
	}
	if len(refusal) > maxVerdictLen {
		refusal = refusal[:maxVerdictLen]
	}
	b := binary.BigEndian.AppendUint16([]byte{verdictRefused}, uint16(len(refusal)))
	_, err := w.Write(append(b, refusal...))
	return err
}

// readVerdict returns the acceptor's refusal, "" when it accepted.
func readVerdict(r io.Reader) (string, error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", err
	}
	switch b[0] {
	case verdictOK:
		return "", nil
	case verdictRefused:
		var n [2]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return "", err
		}
		msg := make([]byte, min(int(binary.BigEndian.Uint16(n[:])), maxVerdictLen))
		if _, err := io.ReadFull(r, msg); err != nil {
			return "", err
		}
		return string(msg), nil
	}
	return "", fmt.Errorf("unknown hello answer %d", b[0])
}

// errRefusedPeer is the error of a raft connection the far side refused
// after the hello (another cluster, another node, another incarnation).
var errRefusedPeer = errors.New("refused by the peer")

// peerLayer is a group's stream layer (the mux's, or a test's) with the
// hello on every connection.
//
// It also owns the connections it accepted, which raft's NetworkTransport
// never closes on its own: their goroutines answer heartbeats directly
// (raft's heartbeat fast path), and one that read a heartbeat just before
// the group's raft shut down went on to store a term in a log store that
// was closed meanwhile, which panics. Close closes them and waits until
// none is handling what it read.
type peerLayer struct {
	raft.StreamLayer
	n     *Node
	group string

	mu     sync.Mutex
	closed bool
	conns  map[*helloConn]struct{}
	busy   sync.WaitGroup // connections handling what they read
}

// acceptedCloseWait bounds how long Close waits for the accepted
// connections' handlers (each is one raft RPC on a shut-down raft).
const acceptedCloseWait = 10 * time.Second

// Close closes the layer and every connection it accepted, then waits for
// their handlers.
func (l *peerLayer) Close() error {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	err := l.StreamLayer.Close()
	for c := range conns {
		_ = c.Conn.Close()
	}
	done := make(chan struct{})
	go func() {
		l.busy.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(acceptedCloseWait):
		l.n.logger.Warn("a raft connection's handler did not finish within the close wait", "group", l.group, "wait", acceptedCloseWait)
	}
	return err
}

// track registers c; false once the layer is closed.
func (l *peerLayer) track(c *helloConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	if l.conns == nil {
		l.conns = map[*helloConn]struct{}{}
	}
	l.conns[c] = struct{}{}
	return true
}

// setBusy marks c as handling what it read (true) or waiting to read
// (false); marking it busy fails once the layer is closed.
func (l *peerLayer) setBusy(c *helloConn, busy bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case busy && l.closed:
		return false
	case busy && !c.busy:
		c.busy = true
		l.busy.Add(1)
	case !busy && c.busy:
		c.busy = false
		l.busy.Done()
	}
	return true
}

// Dial connects, says hello and waits for the acceptor's answer.
func (l *peerLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, err := l.StreamLayer.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	h := l.n.helloFor(l.group, addr)
	if timeout <= 0 || timeout > helloTimeout {
		timeout = helloTimeout
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	refusal, err := "", error(nil)
	if _, err = conn.Write(h.encode()); err == nil {
		refusal, err = readVerdict(conn)
	}
	if err == nil && refusal == "" {
		err = conn.SetDeadline(time.Time{})
	}
	switch {
	case err != nil:
		_ = conn.Close()
		return nil, fmt.Errorf("hello to %s for %s: %w", addr, l.group, err)
	case refusal != "":
		_ = conn.Close()
		return nil, fmt.Errorf("%s %w for %s: %s", addr, errRefusedPeer, l.group, refusal)
	}
	return conn, nil
}

// Accept returns connections that read the dialler's hello, and answer
// it, before their first byte reaches raft.
func (l *peerLayer) Accept() (net.Conn, error) {
	c, err := l.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	hc := &helloConn{Conn: c, l: l}
	if !l.track(hc) {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	return hc, nil
}

// helloConn checks the hello on its first Read, in the goroutine raft
// serves the connection with, so a slow dialler delays no one else.
type helloConn struct {
	net.Conn
	l       *peerLayer
	once    sync.Once
	err     error
	pending []byte // a legacy peer's first byte, read while looking for the hello
	busy    bool   // guarded by l.mu
}

// Read is called by the one goroutine raft serves the connection with:
// between two calls it is handling what it read.
func (c *helloConn) Read(p []byte) (int, error) {
	c.l.setBusy(c, false)
	n, err := c.read(p)
	if n > 0 && !c.l.setBusy(c, true) {
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *helloConn) read(p []byte) (int, error) {
	c.once.Do(c.handshake)
	if c.err != nil {
		return 0, c.err
	}
	if len(c.pending) > 0 && len(p) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Close closes the connection and stops tracking it.
func (c *helloConn) Close() error {
	c.l.setBusy(c, false)
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

func (c *helloConn) handshake() {
	n, remote := c.l.n, c.Conn.RemoteAddr().String()
	_ = c.Conn.SetReadDeadline(time.Now().Add(helloTimeout))
	var first [1]byte
	if _, c.err = io.ReadFull(c.Conn, first[:]); c.err != nil {
		return
	}
	if first[0] != helloMagic[0] {
		// A raftkv from before incarnations: raft traffic at once.
		n.logger.Debug("raft connection without a hello (an older raftkv)", "group", c.l.group, "remote", remote)
		c.pending = first[:]
		c.err = c.Conn.SetReadDeadline(time.Time{})
		return
	}
	h, err := readHello(c.Conn)
	if err != nil {
		n.logger.Warn("refused a raft connection: bad hello", "group", c.l.group, "remote", remote, "error", err)
		c.fail(err)
		return
	}
	refusal := n.admitPeer(h, c.l.group)
	_ = c.Conn.SetWriteDeadline(time.Now().Add(helloTimeout))
	if err := writeVerdict(c.Conn, refusal); err != nil {
		c.fail(err)
		return
	}
	if refusal != "" {
		if k := n.refused[c.l.group]; k != nil {
			k.Add(1)
		}
		n.logger.Warn("refused a raft connection", "group", c.l.group, "from", h.From, "remote", remote, "reason", refusal)
		c.fail(fmt.Errorf("%w: %s", errRefusedPeer, refusal))
		return
	}
	if err := c.Conn.SetDeadline(time.Time{}); err != nil {
		c.fail(err)
	}
}

func (c *helloConn) fail(err error) {
	c.err = err
	_ = c.Conn.Close()
}

// helloFor is the hello this node sends when it dials addr for group.
func (n *Node) helloFor(group string, addr raft.ServerAddress) hello {
	h := hello{Cluster: n.clusterID, Group: group, From: n.cfg.NodeID, FromInc: n.incarnation}
	if reg := n.registry.Load(); reg != nil {
		matches := 0
		for _, nd := range reg.Nodes() {
			if nd.RaftAddr == string(addr) {
				h.To, h.ToInc = nd.ID, nd.Incarnation
				matches++
			}
		}
		if matches > 1 { // an address given up and taken again: expect no one in particular
			h.To, h.ToInc = "", ""
		}
	}
	return h
}

// admitPeer returns why a connection with hello h must be refused, or "".
func (n *Node) admitPeer(h hello, group string) string {
	if h.To == n.cfg.NodeID && h.From != n.cfg.NodeID &&
		((h.Cluster != "" && h.Cluster != n.clusterID) || (h.ToInc != "" && h.ToInc != n.incarnation)) {
		n.noteClaim(h)
	}
	switch {
	case h.Group != group:
		return fmt.Sprintf("hello for group %q on the connection of %q", h.Group, group)
	case h.Cluster != "" && h.Cluster != n.clusterID:
		return fmt.Sprintf("%s is in cluster %s, this node (%s) is in cluster %s", h.From, h.Cluster, n.cfg.NodeID, n.clusterID)
	case h.To != "" && h.To != n.cfg.NodeID:
		return fmt.Sprintf("%s dialled %s, but this address is node %s", h.From, h.To, n.cfg.NodeID)
	case h.ToInc != "" && h.ToInc != n.incarnation:
		return fmt.Sprintf("%s knows %s by incarnation %s, but this node's data is incarnation %s: its data dir was wiped or replaced, "+
			"so it takes no part in raft until the cluster has removed it and added it again (start it with --join)",
			h.From, n.cfg.NodeID, h.ToInc, n.incarnation)
	}
	if reg := n.registry.Load(); reg != nil {
		if rec, ok := reg.Node(h.From); ok && rec.Incarnation != "" && rec.Incarnation != h.FromInc {
			return fmt.Sprintf("this cluster knows %s by incarnation %s, but it presents %q: its data dir was wiped or replaced, "+
				"so it takes no part in raft until it has been removed and added again (it asks for that when started with --join)",
				h.From, rec.Incarnation, h.FromInc)
		}
	}
	return ""
}

// noteClaim records the first hello showing that a cluster other than this
// node's data knows this node's id and address, for the check before a
// bootstrap (awaitClaims).
func (n *Node) noteClaim(h hello) {
	msg := fmt.Sprintf("cluster %s still lists %s at %s with incarnation %q (%s dialled it for %s)",
		h.Cluster, n.cfg.NodeID, n.cfg.RaftAddr, h.ToInc, h.From, h.Group)
	n.claim.CompareAndSwap(nil, &msg)
}

// awaitClaims waits up to BootstrapWait for a peer of an existing cluster
// to contact this node as one of its members, before a node with an empty
// data dir and no --join makes itself a new cluster. Leaders keep dialling a
// member that went away (backing off to about 10 s between attempts), so a
// wiped node restarted without --join hears from its old cluster and
// refuses to start instead of founding a second cluster on addresses the
// first still uses. Without stream layers (raft's in-memory transport)
// there is no hello to wait for.
func (n *Node) awaitClaims() error {
	if n.cfg.NewTransport != nil || n.cfg.BootstrapWait <= 0 {
		return nil
	}
	deadline := time.Now().Add(n.cfg.BootstrapWait)
	n.logger.Info("data dir is empty and no --join given: listening for an existing cluster before bootstrapping", "wait", n.cfg.BootstrapWait)
	for {
		if msg := n.claim.Load(); msg != nil {
			return fmt.Errorf("%w: refusing to bootstrap a new cluster: the data dir of %s is empty, but %s. "+
				"Its data dir was wiped or replaced: start it with --join <HTTP address of a member> to be removed and added again, "+
				"or give it other addresses to found a new cluster", ErrConflict, n.cfg.NodeID, *msg)
		}
		if !time.Now().Before(deadline) {
			return nil
		}
		if !n.sleepOrStop(20 * time.Millisecond) {
			return fmt.Errorf("%w: node is shutting down", ErrUnavailable)
		}
	}
}
