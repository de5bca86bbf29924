package rpc

import (
	"bytes"
	"context"
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

// aLongTimeAgo is a deadline in the past: setting it makes a blocked Read
// return at once.
var aLongTimeAgo = time.Unix(1, 0)

func (s *Server) serveConn(conn net.Conn) {
	defer s.wg.Done()
	defer func() {
		_ = conn.Close()
		s.mu.Lock()
		delete(s.mu.conns, conn)
		s.mu.Unlock()
	}()
	remote := conn.RemoteAddr().String()
	for {
		req, err := s.readRequest(conn)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				s.cfg.Logger.Warn("rpc: dropping connection", "remote", remote, "error", err)
			}
			return
		}
		resp, alive := s.call(conn, req)
		if !alive {
			return // the caller hung up; nobody reads the reply
		}
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.FrameTimeout))
		if _, err := conn.Write(encodeResponse(resp)); err != nil {
			return
		}
	}
}

// readRequest waits up to the idle timeout for a request to begin and up to
// the frame timeout for the rest of it.
func (s *Server) readRequest(conn net.Conn) (Request, error) {
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		return Request{}, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.FrameTimeout))
	body, err := readFrame(io.MultiReader(bytes.NewReader(first[:]), conn), MaxRequestBytes)
	if err != nil {
		return Request{}, err
	}
	return decodeRequest(body)
}

// call runs the handler. While it runs, a background read watches the
// connection: a well-behaved caller sends nothing until it has the reply, so
// the read ending means the caller hung up (or gave up at its deadline), and
// the call's context is cancelled. alive is false in that case.
func (s *Server) call(conn net.Conn, req Request) (resp Response, alive bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if req.DeadlineMillis > 0 {
		d := min(time.Duration(req.DeadlineMillis)*time.Millisecond, s.cfg.MaxDeadline)
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeout(ctx, d)
		defer cancelTimeout()
	}
	_ = conn.SetReadDeadline(time.Time{})
	hungUp := make(chan bool, 1)
	go func() {
		var b [1]byte
		_, err := conn.Read(b[:])
		// A timeout is ours, set below to end this read; anything else
		// (end of stream, reset, or a byte the caller had no business
		// sending yet) ends the connection.
		gone := err == nil || !errors.Is(err, os.ErrDeadlineExceeded)
		if gone {
			cancel()
		}
		hungUp <- gone
	}()

	result, err := s.cfg.Handler(ctx, req)

	_ = conn.SetReadDeadline(aLongTimeAgo)
	if <-hungUp {
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
