package raftlane

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"time"
)

// conn is one lane connection, either end. Senders queue whole frames; one
// writer goroutine writes everything queued since its last write in one
// buffered write, which is where appends of different groups share a
// syscall. Reading is the owner's (the caller's reader goroutine).
type conn struct {
	nc      net.Conn
	timeout time.Duration // per write

	mu     sync.Mutex
	queue  [][]byte
	spare  [][]byte
	err    error // why the connection ended; set once
	wake   chan struct{}
	done   chan struct{} // closed when the connection ends
	writes *counter      // frames and writes, for Stats
}

type counter struct {
	mu            sync.Mutex
	frames, calls uint64
}

func (c *counter) add(frames int) {
	c.mu.Lock()
	c.frames += uint64(frames)
	c.calls++
	c.mu.Unlock()
}

func newConn(nc net.Conn, timeout time.Duration, writes *counter) *conn {
	return &conn{nc: nc, timeout: timeout, wake: make(chan struct{}, 1), done: make(chan struct{}), writes: writes}
}

// send queues a frame; false when the connection has ended.
func (c *conn) send(frame []byte) bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, frame)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// fail ends the connection with err (the first one wins) and closes it.
func (c *conn) fail(err error) {
	c.mu.Lock()
	first := c.err == nil
	if first {
		c.err = err
		c.queue = nil
	}
	c.mu.Unlock()
	if first {
		close(c.done)
		_ = c.nc.Close()
	}
}

// cause is why the connection ended (nil while it is up).
func (c *conn) cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// writeLoop writes queued frames until the connection ends.
func (c *conn) writeLoop() {
	w := bufio.NewWriterSize(c.nc, 64<<10)
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		// Let the other senders woken by the same event (one sync of
		// the log answering several groups) queue theirs first, so
		// they share this write.
		runtime.Gosched()
		c.mu.Lock()
		if len(c.queue) == 0 { // woken for frames an earlier pass took
			c.mu.Unlock()
			continue
		}
		// The two slices take turns: senders fill one while this
		// writes the other, and neither is ever both.
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
		for _, f := range batch {
			if _, err := w.Write(f); err != nil {
				c.fail(fmt.Errorf("writing: %w", err))
				return
			}
		}
		if err := w.Flush(); err != nil {
			c.fail(fmt.Errorf("writing: %w", err))
			return
		}
		c.writes.add(len(batch))
		clear(batch)
		c.mu.Lock()
		c.spare = batch[:0]
		c.mu.Unlock()
	}
}

// frameReader reads frames through a buffer.
type frameReader struct{ r *bufio.Reader }

func newFrameReader(nc net.Conn) frameReader { return frameReader{bufio.NewReaderSize(nc, 64<<10)} }

// next returns the next frame's kind and body (after the kind byte). The
// body is a fresh allocation: decoded entries alias it.
func (fr frameReader) next() (byte, []byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n < 1 || n > maxFrame {
		return 0, nil, fmt.Errorf("%w: body of %d bytes", errFrame, n)
	}
	kind, err := fr.r.ReadByte()
	if err != nil {
		return 0, nil, noEOF(err)
	}
	body := make([]byte, n-1)
	if _, err := io.ReadFull(fr.r, body); err != nil {
		return 0, nil, noEOF(err)
	}
	return kind, body, nil
}

// noEOF makes an end of stream inside a frame an unexpected one.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
