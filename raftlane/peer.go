package raftlane

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Backoff after a failed dial: appends to that peer take the groups' own
// transports meanwhile, so a peer that is down, or runs a build without
// lanes, costs no waiting and few dials.
const (
	minRedial = 500 * time.Millisecond
	maxRedial = time.Minute
)

// peer is the outgoing lane to one address.
type peer struct {
	addr raft.ServerAddress

	mu        sync.Mutex
	c         *conn
	pending   map[uint64]chan reply
	nextID    uint64
	dialing   bool
	downUntil time.Time
	redial    time.Duration
}

type reply struct {
	resp raft.AppendEntriesResponse
	err  error
}

func (p *peer) current() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.c
}

func (l *Lane) peer(addr raft.ServerAddress) *peer {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[addr]
	if p == nil {
		p = &peer{addr: addr}
		l.peers[addr] = p
	}
	return p
}

// appendEntries sends an append over the lane to target. handled is false
// when no lane connection is up: the caller then uses the group's own
// transport, and a dial starts in the background.
func (l *Lane) appendEntries(group string, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (handled bool, err error) {
	p := l.peer(target)
	done := make(chan reply, 1)
	p.mu.Lock()
	c := p.c
	if c == nil {
		if !p.dialing && time.Now().After(p.downUntil) {
			p.dialing = true
			if !l.goFunc(func() { l.dial(p) }) {
				p.dialing = false
			}
		}
		p.mu.Unlock()
		return false, nil
	}
	p.nextID++
	id := p.nextID
	p.pending[id] = done
	p.mu.Unlock()

	if !c.send(encodeRequest(id, group, args)) {
		p.forget(id)
		return false, nil // nothing was written: the group's transport may try
	}
	l.appends.Add(1)
	timer := time.NewTimer(l.cfg.Timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return true, r.err
		}
		*resp = r.resp
		return true, nil
	case <-timer.C:
		p.forget(id)
		return true, fmt.Errorf("lane to %s: no reply within %v", target, l.cfg.Timeout)
	case <-l.stop:
		p.forget(id)
		return true, fmt.Errorf("lane to %s: %w", target, raft.ErrTransportShutdown)
	}
}

func (p *peer) forget(id uint64) {
	p.mu.Lock()
	delete(p.pending, id)
	p.mu.Unlock()
}

// dial opens the lane to p and then reads its replies until it ends.
func (l *Lane) dial(p *peer) {
	nc, err := l.cfg.Layer.Dial(p.addr, l.cfg.Timeout)
	p.mu.Lock()
	p.dialing = false
	if err != nil {
		p.redial = min(max(2*p.redial, minRedial), maxRedial)
		p.downUntil = time.Now().Add(p.redial)
		retryIn := p.redial // p.redial is p.mu's: the next dial may reset it
		p.mu.Unlock()
		l.log.Debug("raftlane: dial failed; appends take the groups' transports meanwhile", "peer", p.addr, "retry_in", retryIn, "error", err)
		return
	}
	c := newConn(nc, l.cfg.Timeout, &l.writes)
	p.redial = 0
	p.c = c
	p.pending = map[uint64]chan reply{}
	p.mu.Unlock()
	if !l.goFunc(c.writeLoop) {
		c.fail(raft.ErrTransportShutdown)
	}
	l.readReplies(p, c)
}

// readReplies hands each reply to its caller; when the connection ends,
// every call still waiting fails with its cause.
func (l *Lane) readReplies(p *peer, c *conn) {
	fr := newFrameReader(c.nc)
	var err error
	for {
		var kind byte
		var body []byte
		kind, body, err = fr.next()
		if err != nil {
			break
		}
		if kind != kindReply {
			err = fmt.Errorf("%w: kind %q where a reply belongs", errFrame, kind)
			break
		}
		var r reply
		var id uint64
		id, r.err, err = decodeReply(body, &r.resp)
		if err != nil {
			break
		}
		p.mu.Lock()
		done := p.pending[id]
		delete(p.pending, id)
		p.mu.Unlock()
		if done != nil {
			done <- r
		}
	}
	if errors.Is(err, errFrame) {
		l.log.Warn("raftlane: closing a connection whose peer sent a malformed frame", "peer", p.addr, "error", err)
	}
	c.fail(err)
	err = c.cause()
	p.mu.Lock()
	if p.c == c {
		p.c = nil
	}
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, done := range pending {
		done <- reply{err: fmt.Errorf("lane to %s ended: %w", p.addr, err)}
	}
}
