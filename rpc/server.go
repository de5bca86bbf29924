package rpc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Handler runs one call. It returns the result bytes, or an error that the
// server's Code function turns into a wire code.
type Handler func(ctx context.Context, req Request) ([]byte, error)

// ServerConfig configures a Server. NodeID, Handler and Code are required.
type ServerConfig struct {
	// NodeID is sent with every reply, so the caller knows who answered.
	NodeID  string
	Handler Handler
	// Code maps a handler's error to its wire code.
	Code func(error) string
	// IdleTimeout closes a connection that sends no request for this long
	// (default 2 minutes). Clients drop pooled connections well before.
	IdleTimeout time.Duration
	// FrameTimeout bounds reading the rest of a request once its first
	// byte arrived, and writing a reply (default 10 s), so a peer that
	// stalls mid-frame cannot pin a goroutine.
	FrameTimeout time.Duration
	// MaxDeadline caps the deadline a caller may ask for (default 5 min).
	MaxDeadline time.Duration
	// MaxConns caps open connections; more are closed at once (default 4096).
	MaxConns int
	Logger   hclog.Logger
}

func (c *ServerConfig) setDefaults() {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.FrameTimeout <= 0 {
		c.FrameTimeout = 10 * time.Second
	}
	if c.MaxDeadline <= 0 {
		c.MaxDeadline = 5 * time.Minute
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 4096
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

// Server answers calls arriving on a listener until Close.
type Server struct {
	cfg ServerConfig
	ln  net.Listener

	wg        sync.WaitGroup
	closeOnce sync.Once
	mu        struct {
		sync.Mutex
		closed bool
		conns  map[net.Conn]struct{}
	}
}

// Serve starts answering calls on ln in the background. The server owns ln
// from now on; Close closes it.
func Serve(ln net.Listener, cfg ServerConfig) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, ln: ln}
	s.mu.conns = make(map[net.Conn]struct{})
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

// Close stops accepting, closes every connection (which cancels the calls
// in progress) and waits for their goroutines. Idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.ln.Close()
		s.mu.Lock()
		s.mu.closed = true
		for c := range s.mu.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
	})
	s.wg.Wait()
	return err
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			// The listener is a mux layer: it fails only once closed.
			return
		}
		s.mu.Lock()
		switch {
		case s.mu.closed:
			s.mu.Unlock()
			_ = conn.Close()
			return
		case len(s.mu.conns) >= s.cfg.MaxConns:
			s.mu.Unlock()
			s.cfg.Logger.Warn("rpc: too many connections; closing a new one", "remote", conn.RemoteAddr(), "limit", s.cfg.MaxConns)
			_ = conn.Close()
			continue
		}
		s.mu.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(conn)
	}
}

// serveConn answers the calls of one connection, one at a time. A reader
// goroutine, owned by serveConn, reads frames for the connection's whole
// life, so a call costs no goroutine, and the reader sees at once when the
// caller hangs up during a call.
func (s *Server) serveConn(conn net.Conn) {
	defer s.wg.Done()
	cc := &serverConn{conn: conn, frames: make(chan frameRead, 1), stop: make(chan struct{})}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.readLoop(cc)
	}()
	defer func() {
		close(cc.stop)
		_ = conn.Close()
		<-readerDone
		s.mu.Lock()
		delete(s.mu.conns, conn)
		s.mu.Unlock()
	}()
	remote := conn.RemoteAddr().String()
	idle := time.NewTimer(s.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		var fr frameRead
		select {
		case fr = <-cc.frames:
		case <-idle.C:
			return // nothing asked for a while: the client pools elsewhere
		}
		req, err := fr.body, fr.err
		var r Request
		if err == nil {
			r, err = decodeRequest(req)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				s.cfg.Logger.Warn("rpc: dropping connection", "remote", remote, "error", err)
			}
			return
		}
		resp, alive := s.call(cc, r)
		if !alive {
			return // the caller hung up; nobody reads the reply
		}
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.FrameTimeout))
		if _, err := conn.Write(encodeResponse(resp)); err != nil {
			return
		}
		idle.Reset(s.cfg.IdleTimeout)
	}
}

// serverConn is what serveConn and its reader share.
type serverConn struct {
	conn   net.Conn
	frames chan frameRead // the reader's frames, then its error
	stop   chan struct{}  // closed when serveConn returns

	mu     sync.Mutex
	cancel context.CancelFunc // the running call's; nil between calls
	hungUp bool               // the caller went away (or sent early) during a call
}

type frameRead struct {
	body []byte
	err  error
}

// readLoop reads request frames until the connection fails. A request may
// take as long as it likes to begin (serveConn times idleness out); once
// its first byte is in, the rest must come within the frame timeout. A
// frame or an error while a call runs means the caller hung up (a
// well-behaved one sends nothing before its reply), and cancels the call.
func (s *Server) readLoop(cc *serverConn) {
	br := bufio.NewReaderSize(cc.conn, 16<<10)
	for {
		var fr frameRead
		if _, err := br.Peek(1); err != nil {
			fr.err = err
		} else {
			timed := !frameBuffered(br)
			if timed {
				_ = cc.conn.SetReadDeadline(time.Now().Add(s.cfg.FrameTimeout))
			}
			fr.body, fr.err = readFrame(br, MaxRequestBytes)
			if timed && fr.err == nil {
				_ = cc.conn.SetReadDeadline(time.Time{})
			}
		}
		cc.mu.Lock()
		if cc.cancel != nil {
			cc.hungUp = true
			cc.cancel()
		}
		cc.mu.Unlock()
		select {
		case cc.frames <- fr:
		case <-cc.stop:
			return
		}
		if fr.err != nil {
			return
		}
	}
}

// frameBuffered reports whether a whole frame already sits in br, so it
// can be read without waiting on (or setting a deadline for) the network.
func frameBuffered(br *bufio.Reader) bool {
	if br.Buffered() < 4 {
		return false
	}
	prefix, err := br.Peek(4)
	if err != nil {
		return false
	}
	return uint64(br.Buffered()) >= 4+uint64(binary.BigEndian.Uint32(prefix))
}

// call runs the handler with a context that the reader cancels if the
// caller hangs up meanwhile; alive is false in that case.
func (s *Server) call(cc *serverConn, req Request) (resp Response, alive bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if req.DeadlineMillis > 0 {
		d := min(time.Duration(req.DeadlineMillis)*time.Millisecond, s.cfg.MaxDeadline)
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeout(ctx, d)
		defer cancelTimeout()
	}
	cc.mu.Lock()
	cc.cancel, cc.hungUp = cancel, false
	cc.mu.Unlock()

	result, err := s.cfg.Handler(ctx, req)

	// Cleared before the reply is written, so the caller's next request
	// (sent only once it has the reply) is never taken for a hang-up.
	cc.mu.Lock()
	cc.cancel = nil
	gone := cc.hungUp
	cc.mu.Unlock()
	if gone {
		return Response{}, false
	}
	resp = Response{Node: s.cfg.NodeID}
	if err != nil {
		resp.Code, resp.Message = s.cfg.Code(err), err.Error()
		if len(resp.Message) > maxMessageBytes {
			resp.Message = resp.Message[:maxMessageBytes]
		}
		return resp, true
	}
	if len(result) > MaxResponseBytes-maxMessageBytes {
		err := fmt.Errorf("reply of %d bytes is over the limit of %d", len(result), MaxResponseBytes-maxMessageBytes)
		resp.Code, resp.Message = s.cfg.Code(err), err.Error()
		return resp, true
	}
	resp.Result = result
	return resp, true
}
