package mux

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// OnPeerGone registers f to be called when a connection this mux accepted
// for group ends from the far side (end of stream or reset): the usual sign
// that the peer process died or closed its transport. f runs on the
// goroutine that was reading the connection, so it must not block: hand
// the work to a goroutine of its owner. It is a hint, not a verdict: pooled connections also end when a
// live peer steps down or restarts a pipeline, so the receiver must confirm
// (see ProbeRefused) before acting on it. Set it before the first layer
// accepts; later calls replace it.
func (m *Mux) OnPeerGone(f func(group string)) { m.peerGone.Store(&f) }

func (m *Mux) notifyPeerGone(group string) {
	if f := m.peerGone.Load(); f != nil && *f != nil {
		(*f)(group)
	}
}

// watchedConn reports the first read that fails because the far side went
// away. Reads that fail because this side closed the connection, or because a
// deadline passed, are not reported.
type watchedConn struct {
	net.Conn
	once sync.Once
	gone func()
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && peerWentAway(err) {
		c.once.Do(c.gone)
	}
	return n, err
}

func peerWentAway(err error) bool {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// ProbeRefused reports whether a TCP connection to address is refused right
// now, which means no process listens on that port: a peer whose
// connections just ended and whose port refuses has died (or is restarting),
// as opposed to one that is merely slow or cut off. The probe sends nothing
// and closes at once; the peer's mux drops it silently.
func ProbeRefused(address string, timeout time.Duration) bool {
	conn, err := net.DialTimeout("tcp", address, timeout)
	if err == nil {
		_ = conn.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
