// Package raftlane carries the raft appends of every group a node hosts to each
// peer over one shared connection.
//
// Each raft group keeps its own transport (raft's NetworkTransport, a
// connection pool per peer) for votes, heartbeats, snapshots and leadership
// transfers. Appends that carry entries take the lane instead: the appends
// of different groups bound for the same peer at the same moment leave in
// one write, arrive together, and reach the peer's write-ahead log together,
// where they share one fdatasync. Frames are self-encoded (codec.go), not
// msgpack. DESIGN.md says why and what was measured.
package raftlane

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Config configures a node's lane.
type Config struct {
	// Layer dials peers' lanes and accepts theirs. It does whatever a raft
	// connection's opening takes (TLS, the mux header, the hello), so a
	// connection it returns carries frames at once.
	Layer raft.StreamLayer
	// Timeout bounds a call, from queueing its request to its reply, and
	// each write. Raft's own transport uses the same (10 s).
	Timeout time.Duration
	// MaxBatchBytes: an append whose entries carry more takes the group's
	// own transport, so a follower's catch-up with large values does not
	// hold up the other groups' appends behind it.
	MaxBatchBytes int
	Logger        hclog.Logger
}

// Stats counts what the lane carried.
type Stats struct {
	Appends   uint64 `json:"appends"`   // appends sent over the lane
	Fallbacks uint64 `json:"fallbacks"` // appends with entries that took the group's own transport
	Frames    uint64 `json:"frames"`    // frames written, both directions
	Writes    uint64 `json:"writes"`    // writes they took (over Frames: what coalescing saves)
}

// Lane is a node's end of the lanes to and from its peers.
type Lane struct {
	cfg Config
	log hclog.Logger

	mu       sync.Mutex
	closed   bool
	groups   map[string]*Transport
	peers    map[raft.ServerAddress]*peer
	accepted map[*conn]struct{}

	stop    chan struct{}
	wg      sync.WaitGroup
	writes  counter
	appends atomic.Uint64 // appends sent on the lane
	falls   atomic.Uint64 // appends with entries that took the group's transport
}

// New starts a lane that accepts on cfg.Layer. Close stops it.
func New(cfg Config) *Lane {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	l := &Lane{cfg: cfg, log: cfg.Logger, groups: map[string]*Transport{}, peers: map[raft.ServerAddress]*peer{},
		accepted: map[*conn]struct{}{}, stop: make(chan struct{})}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Stats returns the counts so far.
func (l *Lane) Stats() Stats {
	var s Stats
	l.writes.mu.Lock()
	s.Frames, s.Writes = l.writes.frames, l.writes.calls
	l.writes.mu.Unlock()
	s.Appends = l.appends.Load()
	s.Fallbacks = l.falls.Load()
	return s
}

// Close stops accepting, ends every connection and waits for the lane's
// goroutines. Groups' transports should be closed first.
func (l *Lane) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.stop)
	l.mu.Unlock()
	// No connection is added once closed is set: acceptLoop checks it, and
	// a dial that ends now cannot start its writer (goFunc refuses).
	conns := l.conns()
	err := l.cfg.Layer.Close()
	for _, c := range conns {
		c.fail(net.ErrClosed)
	}
	l.wg.Wait()
	return err
}

// conns lists the lane's connections, accepted and dialled.
func (l *Lane) conns() []*conn {
	l.mu.Lock()
	var conns []*conn
	for c := range l.accepted {
		conns = append(conns, c)
	}
	peers := make([]*peer, 0, len(l.peers))
	for _, p := range l.peers {
		peers = append(peers, p)
	}
	l.mu.Unlock()
	// p.mu is taken after l.mu is released: appendEntries holds p.mu
	// while it takes l.mu to start a dial.
	for _, p := range peers {
		if c := p.current(); c != nil {
			conns = append(conns, c)
		}
	}
	return conns
}

// goFunc runs f as one of the lane's goroutines; false once closed.
func (l *Lane) goFunc(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
	return true
}

func (l *Lane) group(name string) *Transport {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.groups[name]
}

func (l *Lane) acceptLoop() {
	defer l.wg.Done()
	for {
		nc, err := l.cfg.Layer.Accept()
		if err != nil {
			select {
			case <-l.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("raftlane: accept failed", "error", err)
			select {
			case <-l.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		c := newConn(nc, l.cfg.Timeout, &l.writes)
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = nc.Close()
			return
		}
		l.accepted[c] = struct{}{}
		l.wg.Add(2)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			c.writeLoop()
		}()
		go func() {
			defer l.wg.Done()
			l.serve(c)
		}()
	}
}

// serve reads requests from an accepted connection and hands each to its
// group's raft, until the connection ends.
func (l *Lane) serve(c *conn) {
	defer func() {
		l.mu.Lock()
		delete(l.accepted, c)
		l.mu.Unlock()
	}()
	fr := newFrameReader(c.nc)
	for {
		kind, body, err := fr.next()
		if err == nil && kind != kindRequest {
			err = fmt.Errorf("%w: kind %q where a request belongs", errFrame, kind)
		}
		var id uint64
		var name string
		var req *raft.AppendEntriesRequest
		if err == nil {
			id, name, req, err = decodeRequest(body)
		}
		if err != nil {
			if errors.Is(err, errFrame) {
				l.log.Warn("raftlane: closing a connection that sent a malformed frame", "remote", c.nc.RemoteAddr().String(), "error", err)
			}
			c.fail(err)
			return
		}
		t := l.group(name)
		if t == nil {
			c.send(encodeErrorReply(id, fmt.Sprintf("group %q is not hosted on this node", name)))
			continue
		}
		// Raft takes one RPC of a group at a time; the others' requests
		// must not wait behind it, so each gets its own goroutine.
		if !l.goFunc(func() { t.deliver(c, id, req) }) {
			c.fail(net.ErrClosed)
			return
		}
	}
}
