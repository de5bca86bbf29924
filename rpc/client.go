package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Errors of Client.Call, matched with errors.Is. A call that failed with
// ErrNotSent certainly did not run; one that failed with ErrBroken may have.
var (
	// ErrNotSent: no connection could be made, or not a byte of the request
	// was written. The operation did not run anywhere.
	ErrNotSent = errors.New("rpc: request not sent")
	// ErrBroken: the request was sent (in part or whole) but no reply came:
	// the connection broke, the peer sent garbage, or the context ended.
	ErrBroken = errors.New("rpc: no reply")
	// ErrClientClosed: Close was called.
	ErrClientClosed = errors.New("rpc: client closed")
)

// RemoteError is an error the peer's handler returned.
type RemoteError struct {
	Node    string
	Code    string
	Message string
}

func (e *RemoteError) Error() string { return e.Code + ": " + e.Message }

// DialFunc opens a connection to a peer's raft port for the RPC layer.
type DialFunc func(addr string, timeout time.Duration) (net.Conn, error)

// ClientConfig configures a Client. Dial is required.
type ClientConfig struct {
	Dial DialFunc
	// DialTimeout bounds a new connection (default 2 s; less if the
	// call's context ends sooner).
	DialTimeout time.Duration
	// MaxIdlePerPeer caps the idle connections kept per peer (default 256:
	// a busy follower forwards hundreds of writes at once, and a call that
	// finds no idle connection pays for a new one, TLS handshake included).
	MaxIdlePerPeer int
	// IdleTimeout drops a pooled connection unused for this long (default
	// 30 s), well within the server's idle timeout so that the server
	// never closes a connection just as the client reuses it.
	IdleTimeout time.Duration
}

// Client makes calls to other nodes, reusing connections.
type Client struct {
	cfg ClientConfig
	mu  struct {
		sync.Mutex
		closed bool
		idle   map[string][]idleConn
	}
}

type idleConn struct {
	conn  *clientConn
	since time.Time
}

// NewClient returns a client that dials with cfg.Dial.
func NewClient(cfg ClientConfig) *Client {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.MaxIdlePerPeer <= 0 {
		cfg.MaxIdlePerPeer = 256
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	c := &Client{cfg: cfg}
	c.mu.idle = make(map[string][]idleConn)
	return c
}

// Close closes every idle connection; calls in flight finish on their own
// connections, which are then closed rather than pooled.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.closed = true
	for _, conns := range c.mu.idle {
		for _, ic := range conns {
			ic.conn.close()
		}
	}
	c.mu.idle = nil
}

// Call sends req to the node at addr and waits for its reply until ctx ends.
// The deadline of ctx travels with the request. A handler's error comes back
// as *RemoteError.
func (c *Client) Call(ctx context.Context, addr string, req Request) (Response, error) {
	if dl, ok := ctx.Deadline(); ok {
		ms := time.Until(dl).Milliseconds()
		if ms <= 0 {
			return Response{}, fmt.Errorf("%w: %v", ErrNotSent, context.DeadlineExceeded)
		}
		req.DeadlineMillis = uint64(ms)
	}
	frame := encodeRequest(req)
	if len(frame)-4 > MaxRequestBytes {
		return Response{}, fmt.Errorf("%w: request of %d bytes is over the limit of %d", ErrNotSent, len(frame)-4, MaxRequestBytes)
	}
	cc, err := c.conn(ctx, addr)
	if err != nil {
		return Response{}, err
	}
	resp, err := cc.exchange(ctx, frame)
	if err != nil {
		cc.close()
		return Response{}, err
	}
	c.release(addr, cc)
	if resp.Code != "" {
		return resp, &RemoteError{Node: resp.Node, Code: resp.Code, Message: resp.Message}
	}
	return resp, nil
}

// conn returns a live pooled connection to addr, or dials a new one.
func (c *Client) conn(ctx context.Context, addr string) (*clientConn, error) {
	for {
		ic, ok, err := c.takeIdle(addr)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if time.Since(ic.since) < c.cfg.IdleTimeout && ic.conn.open() {
			return ic.conn, nil
		}
		ic.conn.close()
	}
	timeout := c.cfg.DialTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	conn, err := c.cfg.Dial(addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %v", ErrNotSent, addr, err)
	}
	return startConn(conn), nil
}

func (c *Client) takeIdle(addr string) (idleConn, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return idleConn{}, false, ErrClientClosed
	}
	conns := c.mu.idle[addr]
	if len(conns) == 0 {
		return idleConn{}, false, nil
	}
	// Most recently used first: it is the least likely to have gone stale.
	ic := conns[len(conns)-1]
	c.mu.idle[addr] = conns[:len(conns)-1]
	return ic, true, nil
}

func (c *Client) release(addr string, cc *clientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed || len(c.mu.idle[addr]) >= c.cfg.MaxIdlePerPeer {
		cc.close()
		return
	}
	c.mu.idle[addr] = append(c.mu.idle[addr], idleConn{conn: cc, since: time.Now()})
}

// clientConn is one connection and the goroutine that reads it. The reader
// runs for the connection's whole life, idle or not, so a connection the
// peer closed (it restarted, or timed it out) is known to be dead before a
// call is sent on it: sending first would leave that call's outcome unknown.
type clientConn struct {
	conn    net.Conn
	replies chan []byte   // one reply body per call; buffered by one
	dead    chan struct{} // closed when the reader stops
	err     error         // why the reader stopped; set before dead closes
	once    sync.Once

	writeDeadline time.Time // what the connection's write deadline is set to; used by one call at a time
}

func startConn(conn net.Conn) *clientConn {
	cc := &clientConn{conn: conn, replies: make(chan []byte, 1), dead: make(chan struct{})}
	go cc.readLoop()
	return cc
}

func (cc *clientConn) readLoop() {
	defer close(cc.dead)
	for {
		body, err := readFrame(cc.conn, MaxResponseBytes)
		if err != nil {
			cc.err = err
			return
		}
		select {
		case cc.replies <- body:
		default:
			// A reply nobody asked for: the peer is not speaking this
			// protocol. Stop trusting the connection.
			cc.err = fmt.Errorf("%w: unsolicited reply", ErrFrame)
			_ = cc.conn.Close()
			return
		}
	}
}

func (cc *clientConn) open() bool {
	select {
	case <-cc.dead:
		return false
	default:
		return true
	}
}

func (cc *clientConn) close() { cc.once.Do(func() { _ = cc.conn.Close() }) }

func (cc *clientConn) exchange(ctx context.Context, frame []byte) (Response, error) {
	// The write deadline is the call's (none without one); it is left set
	// after the write and replaced by the next call's.
	if dl, _ := ctx.Deadline(); !dl.Equal(cc.writeDeadline) {
		_ = cc.conn.SetWriteDeadline(dl)
		cc.writeDeadline = dl
	}
	if n, err := cc.conn.Write(frame); err != nil {
		if n == 0 {
			return Response{}, fmt.Errorf("%w: %v", ErrNotSent, err)
		}
		return Response{}, fmt.Errorf("%w: %v", ErrBroken, err)
	}
	select {
	case body := <-cc.replies:
		resp, err := decodeResponse(body)
		if err != nil {
			return Response{}, fmt.Errorf("%w: %v", ErrBroken, err)
		}
		return resp, nil
	case <-cc.dead:
		// A reply that arrived just before the reader stopped still counts.
		select {
		case body := <-cc.replies:
			if resp, err := decodeResponse(body); err == nil {
				return resp, nil
			}
		default:
		}
		return Response{}, fmt.Errorf("%w: %v", ErrBroken, cc.err)
	case <-ctx.Done():
		return Response{}, fmt.Errorf("%w: %v", ErrBroken, ctx.Err())
	}
}
