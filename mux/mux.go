package mux

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

const (
	// headerMagic opens every connection so that a stray client (an HTTP
	// probe, a port scanner, a peer of an older build) is rejected at once
	// instead of being fed to raft's decoder.
	headerMagic = "RKVM"
	// headerVersion is bumped if the header layout ever changes.
	headerVersion = 1
	// MaxGroupLen is the longest group name the header can carry. Names are
	// short ids like "shard-12"; the cap bounds what a client can make us read.
	MaxGroupLen = 64

	// defaultHeaderTimeout bounds how long a connection may take to finish
	// its TLS handshake (when TLS is on) and send its header. A silent client
	// only costs one goroutine for this long.
	defaultHeaderTimeout = 5 * time.Second
	// defaultMaxPending bounds the connections still handshaking or sending
	// their header. Peers open a handful per group and finish within
	// milliseconds, so only a flood of clients that never finish reaches it.
	defaultMaxPending = 256
	// overloadLogEvery spaces the Warn lines for connections refused over
	// the pending limit, so a flood does not also flood the log.
	overloadLogEvery = time.Second

	// Backoff bounds for listener errors (e.g. EMFILE), so the loop neither
	// spins nor stalls for long once the condition clears.
	acceptBaseDelay = 5 * time.Millisecond
	acceptMaxDelay  = time.Second
)

// Errors returned by this package. Callers match them with errors.Is.
var (
	// ErrMuxClosed is returned by Mux.Layer after Mux.Close.
	ErrMuxClosed = errors.New("mux: closed")
	// ErrLayerClosed is returned by Layer.Accept and Layer.Dial once the
	// layer (or its mux) is closed.
	ErrLayerClosed = errors.New("mux: layer closed")
	// ErrGroupRegistered is returned by Mux.Layer for a group that already
	// has an open layer.
	ErrGroupRegistered = errors.New("mux: group already registered")
	// ErrBadGroup is returned for a group name that the header cannot carry.
	ErrBadGroup = errors.New("mux: invalid group name")
	// ErrBadAdvertise is returned for an advertise address peers cannot dial.
	ErrBadAdvertise = errors.New("mux: invalid advertise address")
	// ErrBadConfig is returned by ListenConfig for an inconsistent Config.
	ErrBadConfig = errors.New("mux: invalid config")
)

// Config is what ListenConfig needs. Only Bind is required; the zero value
// of every other field is the plaintext mux that Listen opens.
type Config struct {
	// Bind is the host:port to listen on.
	Bind string
	// Logger receives the mux's log lines; nil discards them.
	Logger hclog.Logger

	// ServerTLS, when set, makes every accepted connection complete a TLS
	// handshake before its header is read. It must require and verify
	// client certificates (tls.RequireAndVerifyClientCert): the port carries
	// raft and node-to-node RPC, which only nodes may send.
	ServerTLS *tls.Config
	// ClientTLS is used by Layer.Dial to wrap every outgoing connection. It
	// must be set exactly when ServerTLS is: a node's peers run the same
	// configuration, so a node that serves TLS dials with TLS too. If it
	// neither names a ServerName nor skips the standard verification, Dial
	// sets ServerName to the host being dialled.
	ClientTLS *tls.Config

	// HeaderTimeout bounds the TLS handshake and the header together, from
	// accept until the connection is handed to its layer. Zero means 5 s.
	HeaderTimeout time.Duration
	// MaxPending is how many connections may be handshaking or sending their
	// header at once; more are closed as soon as they are accepted. Zero
	// means 256.
	MaxPending int
}

// Validate reports a Config that ListenConfig would refuse.
func (c *Config) Validate() error {
	switch {
	case c.Bind == "":
		return fmt.Errorf("%w: no bind address", ErrBadConfig)
	case (c.ServerTLS == nil) != (c.ClientTLS == nil):
		return fmt.Errorf("%w: ServerTLS and ClientTLS must be set together", ErrBadConfig)
	case c.ServerTLS != nil && c.ServerTLS.ClientAuth != tls.RequireAndVerifyClientCert:
		return fmt.Errorf("%w: ServerTLS must require and verify client certificates", ErrBadConfig)
	case c.HeaderTimeout < 0:
		return fmt.Errorf("%w: negative HeaderTimeout %v", ErrBadConfig, c.HeaderTimeout)
	case c.MaxPending < 0:
		return fmt.Errorf("%w: negative MaxPending %d", ErrBadConfig, c.MaxPending)
	}
	return nil
}

// Mux owns one TCP listener and routes each accepted connection to the
// Layer registered for the group named in its header.
type Mux struct {
	ln            net.Listener
	logger        hclog.Logger
	headerTimeout time.Duration
	maxPending    int
	serverTLS     *tls.Config // nil: plaintext
	clientTLS     *tls.Config // nil: plaintext

	// Owned by the accept loop: connections refused over maxPending since
	// the last Warn about it, and when that was.
	overloaded     int
	overloadLogged time.Time

	shutdownCh chan struct{} // closed by Close; every goroutine selects on it
	closeOnce  sync.Once
	wg         sync.WaitGroup // the accept loop and every header reader
	peerGone   atomic.Pointer[func(group string)]

	mu struct {
		sync.Mutex
		closed bool
		layers map[string]*Layer
		// pending holds connections whose header is still being read, so
		// Close can unblock their readers without waiting for the deadline.
		pending map[net.Conn]struct{}
	}
}

// Listen binds bindAddr and starts accepting plaintext connections. The
// accept loop runs until Close. A nil logger discards log output.
func Listen(bindAddr string, logger hclog.Logger) (*Mux, error) {
	return ListenConfig(Config{Bind: bindAddr, Logger: logger})
}

// ListenConfig binds cfg.Bind and starts accepting connections, over TLS
// when cfg sets it. The accept loop runs until Close.
func ListenConfig(cfg Config) (*Mux, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("mux: listen %s: %w", cfg.Bind, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	m := &Mux{
		ln:            ln,
		logger:        logger.Named("mux"),
		headerTimeout: cmp.Or(cfg.HeaderTimeout, defaultHeaderTimeout),
		maxPending:    cmp.Or(cfg.MaxPending, defaultMaxPending),
		serverTLS:     cfg.ServerTLS,
		clientTLS:     cfg.ClientTLS,
		shutdownCh:    make(chan struct{}),
	}
	m.mu.layers = make(map[string]*Layer)
	m.mu.pending = make(map[net.Conn]struct{})
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// Addr returns the address the listener is bound to.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Layer registers group and returns its stream layer. advertise is the
// host:port peers dial to reach this mux; it becomes Layer.Addr and hence the
// raft server address. An empty advertise uses the bound address, which must
// then not be a wildcard such as 0.0.0.0.
func (m *Mux) Layer(group string, advertise string) (*Layer, error) {
	if err := validGroup(group); err != nil {
		return nil, err
	}
	if advertise == "" {
		advertise = m.ln.Addr().String()
	}
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadAdvertise, advertise, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return nil, fmt.Errorf("%w %q: peers cannot dial an unspecified host", ErrBadAdvertise, advertise)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return nil, ErrMuxClosed
	}
	if _, ok := m.mu.layers[group]; ok {
		return nil, fmt.Errorf("%w: %q", ErrGroupRegistered, group)
	}
	l := &Layer{
		mux:       m,
		group:     group,
		header:    encodeHeader(group),
		advertise: tcpAddr(advertise),
		connCh:    make(chan net.Conn),
		closeCh:   make(chan struct{}),
	}
	m.mu.layers[group] = l
	return l, nil
}

// Close stops the accept loop, closes the listener, every layer and every
// connection still sending its header, and waits for the mux's goroutines
// to end. Connections already handed to a layer belong to their acceptor and
// are left alone. Close is idempotent; only the first call reports an error.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.shutdownCh)
		err = m.ln.Close()

		m.mu.Lock()
		m.mu.closed = true
		pending := m.mu.pending
		m.mu.pending = nil
		layers := make([]*Layer, 0, len(m.mu.layers))
		for _, l := range m.mu.layers {
			layers = append(layers, l)
		}
		m.mu.Unlock()

		for c := range pending {
			_ = c.Close()
		}
		// Layer.Close takes m.mu, so it runs after the unlock above.
		for _, l := range layers {
			_ = l.Close()
		}
	})
	m.wg.Wait()
	return err
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.shutdownCh:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				m.logger.Error("listener closed unexpectedly, no longer accepting", "error", err)
				return
			}
			// Anything else (out of file descriptors, aborted handshakes)
			// is treated as transient, as net/http and raft do.
			delay = min(max(2*delay, acceptBaseDelay), acceptMaxDelay)
			m.logger.Warn("accept failed, retrying", "error", err, "backoff", delay)
			t := time.NewTimer(delay)
			select {
			case <-m.shutdownCh:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		delay = 0

		m.mu.Lock()
		if m.mu.closed {
			m.mu.Unlock()
			_ = conn.Close()
			return
		}
		if len(m.mu.pending) >= m.maxPending {
			m.mu.Unlock()
			_ = conn.Close()
			m.refusedOverLimit(conn.RemoteAddr())
			continue
		}
		m.mu.pending[conn] = struct{}{}
		// Add under m.mu: Close sets closed under the same lock before it
		// waits, so no Add can race with Wait at a zero count.
		m.wg.Add(1)
		m.mu.Unlock()
		go m.route(conn)
	}
}

// refusedOverLimit logs a connection closed because too many others are
// still handshaking, at most once per overloadLogEvery with the count since.
func (m *Mux) refusedOverLimit(remote net.Addr) {
	m.overloaded++
	if now := time.Now(); now.Sub(m.overloadLogged) >= overloadLogEvery {
		m.logger.Warn("rejected connection: too many connections still handshaking",
			"remote", remote.String(), "limit", m.maxPending, "refused", m.overloaded)
		m.overloaded, m.overloadLogged = 0, now
	}
}

// route reads conn's header and hands conn to its group's layer. It runs in
// its own goroutine so a slow or silent client never holds up the accept loop.
func (m *Mux) route(conn net.Conn) {
	defer m.wg.Done()
	remote := conn.RemoteAddr().String()

	// One deadline for the handshake and the header: both reads and writes,
	// since the server side of a handshake writes too.
	_ = conn.SetDeadline(time.Now().Add(m.headerTimeout))
	c, err := m.handshake(conn)
	var group string
	if err == nil {
		group, err = readHeader(c)
	}

	m.mu.Lock()
	closing := m.mu.closed
	delete(m.mu.pending, conn)
	var l *Layer
	if err == nil {
		l = m.mu.layers[group]
	}
	m.mu.Unlock()

	var hsErr *handshakeError
	switch {
	case closing:
		_ = conn.Close() // Close may already have closed it; closing twice is harmless
		return
	case errors.Is(err, io.EOF):
		// Closed before sending a byte: a liveness probe (ProbeRefused) or
		// a peer that gave up. Nothing to warn about.
		m.logger.Debug("connection closed before its header", "remote", remote)
		_ = conn.Close()
		return
	case errors.As(err, &hsErr):
		m.logger.Warn("rejected connection: TLS handshake failed", "remote", remote, "error", hsErr.err)
		_ = conn.Close()
		return
	case err != nil:
		m.logger.Warn("rejected connection: bad header", "remote", remote, "error", err)
		_ = conn.Close()
		return
	case l == nil:
		m.logger.Warn("rejected connection: unknown group", "remote", remote, "group", group)
		_ = conn.Close()
		return
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		m.logger.Warn("rejected connection: clearing deadline", "remote", remote, "group", group, "error", err)
		_ = conn.Close()
		return
	}

	// The channel is unbuffered so that a connection is never stranded in a
	// buffer: it is either taken by Accept or closed here.
	watched := &watchedConn{Conn: c, gone: func() { m.notifyPeerGone(group) }}
	select {
	case l.connCh <- watched:
	case <-l.closeCh:
		_ = conn.Close()
	case <-m.shutdownCh:
		_ = conn.Close()
	}
}

// handshake runs the server side of TLS on conn when the mux has TLS on,
// under the deadline route set, and returns the connection to read the
// header from. A dialler that closes before sending anything yields io.EOF,
// like a plaintext one; every other failure is a *handshakeError.
func (m *Mux) handshake(conn net.Conn) (net.Conn, error) {
	if m.serverTLS == nil {
		return conn, nil
	}
	tc := tls.Server(conn, m.serverTLS)
	if err := tc.Handshake(); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		var rec tls.RecordHeaderError
		if errors.As(err, &rec) && string(rec.RecordHeader[:len(headerMagic)]) == headerMagic {
			err = fmt.Errorf("%w (a plaintext raftkv header: the dialler has peer TLS off)", err)
		}
		return nil, &handshakeError{err}
	}
	return tc, nil
}

// handshakeError marks a failed TLS handshake, so route logs it as such.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// encodeHeader returns the bytes a dialer writes for group.
func encodeHeader(group string) []byte {
	b := make([]byte, 0, len(headerMagic)+2+len(group))
	b = append(b, headerMagic...)
	b = append(b, headerVersion, byte(len(group)))
	return append(b, group...)
}

// readHeader reads exactly the header and nothing more: whatever follows
// belongs to raft, so no buffered reader may be used here.
func readHeader(r io.Reader) (string, error) {
	var fixed [len(headerMagic) + 2]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return "", fmt.Errorf("reading header: %w", err)
	}
	if string(fixed[:len(headerMagic)]) != headerMagic {
		if fixed[0] == 0x16 && fixed[1] == 0x03 { // a TLS handshake record
			return "", fmt.Errorf("bad magic %q (a TLS handshake: the dialler has peer TLS on and this port does not)", fixed[:len(headerMagic)])
		}
		return "", fmt.Errorf("bad magic %q", fixed[:len(headerMagic)])
	}
	if v := fixed[len(headerMagic)]; v != headerVersion {
		return "", fmt.Errorf("unsupported version %d", v)
	}
	n := int(fixed[len(headerMagic)+1])
	if n < 1 || n > MaxGroupLen {
		return "", fmt.Errorf("bad group length %d", n)
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return "", fmt.Errorf("reading group name: %w", err)
	}
	if err := validGroup(string(name)); err != nil {
		return "", err
	}
	return string(name), nil
}

// validGroup accepts 1..MaxGroupLen bytes of printable ASCII without spaces,
// which keeps names safe to log and to use as directory names elsewhere.
func validGroup(group string) error {
	if len(group) < 1 || len(group) > MaxGroupLen {
		return fmt.Errorf("%w: length %d not in 1..%d", ErrBadGroup, len(group), MaxGroupLen)
	}
	for i := 0; i < len(group); i++ {
		if c := group[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: byte 0x%02x at %d", ErrBadGroup, c, i)
		}
	}
	return nil
}
