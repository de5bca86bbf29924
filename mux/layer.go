package mux

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

var _ raft.StreamLayer = (*Layer)(nil)

// Layer is one group's view of the shared port: a net.Listener that yields
// only that group's connections, and a dialer that tags outgoing ones.
type Layer struct {
	mux       *Mux
	group     string
	header    []byte
	advertise tcpAddr

	connCh    chan net.Conn // unbuffered; fed by Mux.route
	closeCh   chan struct{}
	closeOnce sync.Once
}

// Group returns the name this layer was registered under.
func (l *Layer) Group() string { return l.group }

// Accept waits for the next connection for this group. It returns
// ErrLayerClosed once the layer or its mux is closed.
func (l *Layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.connCh:
		// select picks at random among ready cases, so a connection can
		// arrive together with the close; honour the close.
		if l.isClosed() {
			_ = c.Close()
			return nil, ErrLayerClosed
		}
		return c, nil
	case <-l.closeCh:
		return nil, ErrLayerClosed
	}
}

// Close stops this layer only and frees its group name, so the group can be
// registered again (raft's NetworkTransport.Close calls this). Idempotent.
func (l *Layer) Close() error {
	l.closeOnce.Do(func() {
		close(l.closeCh)
		m := l.mux
		m.mu.Lock()
		// Only remove our own entry: a later layer may own the name by now.
		if m.mu.layers[l.group] == l {
			delete(m.mu.layers, l.group)
		}
		m.mu.Unlock()
	})
	return nil
}

// Addr returns the advertised address, which raft uses as this server's
// address, so it must be what peers dial.
func (l *Layer) Addr() net.Addr { return l.advertise }

// Dial connects to the mux at address and writes this group's header, so
// the connection reaches the peer's layer for the same group. With TLS on,
// the handshake comes first and the header goes inside it. The handshake and
// the header write share one deadline, timeout after Dial was called.
//
// Under TLS 1.3 the server checks the client's certificate after the client
// has finished its handshake, so a peer that refuses this node's certificate
// shows up as an error on the first read, not here.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.isClosed() {
		return nil, ErrLayerClosed
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	conn, err := l.dialPatiently(string(address), timeout)
	if err != nil {
		return nil, err
	}
	// The header is tiny, but a peer with a full receive window could still
	// stall the write; bound it by the same timeout raft gave for the dial.
	_ = conn.SetDeadline(deadline)
	if cfg := l.mux.clientTLS; cfg != nil {
		tc := tls.Client(conn, clientConfigFor(cfg, string(address)))
		if err := tc.Handshake(); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("mux: TLS handshake with %s: %w", address, err)
		}
		conn = tc
	}
	if _, err := conn.Write(l.header); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("mux: writing header to %s: %w", address, err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("mux: clearing deadline for %s: %w", address, err)
	}
	return conn, nil
}

// clientConfigFor returns cfg, or a copy naming the host being dialled if
// cfg would otherwise have crypto/tls refuse to verify without a name.
func clientConfigFor(cfg *tls.Config, address string) *tls.Config {
	if cfg.ServerName != "" || cfg.InsecureSkipVerify {
		return cfg
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return cfg // the dial itself would have failed on such an address
	}
	named := cfg.Clone()
	named.ServerName = host
	return named
}

// While a peer's port refuses connections (the process is down or
// restarting), Dial keeps trying for up to refusedPatience before it gives
// up. raft backs off exponentially after every failed heartbeat (10 ms
// doubling to about 10 s) and its wait cannot be interrupted, so failing in
// a microsecond would pile up failures while a peer restarts and leave the
// restarted node unheard from for seconds. Failing at most about once a
// second keeps that backoff short, so a restarted node is contacted within
// refusedRetry of listening again.
const (
	refusedPatience = time.Second
	refusedRetry    = 20 * time.Millisecond
)

func (l *Layer) dialPatiently(address string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	deadline := time.Now().Add(refusedPatience)
	if timeout > 0 && timeout < refusedPatience {
		deadline = time.Now().Add(timeout)
	}
	for {
		conn, err := d.Dial("tcp", address)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().Add(refusedRetry).After(deadline) {
			return conn, err
		}
		select {
		case <-l.closeCh:
			return nil, ErrLayerClosed
		case <-time.After(refusedRetry):
		}
	}
}

func (l *Layer) isClosed() bool {
	select {
	case <-l.closeCh:
		return true
	default:
		return false
	}
}

// tcpAddr is an advertised host:port kept as written. It is not resolved,
// so a hostname stays a hostname in raft's configuration.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }
