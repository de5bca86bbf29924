package raftkvtest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// pipeNet carries the nodes' node-to-node calls in memory, like the
// in-memory raft transports carry raft traffic, so Disconnect cuts both the
// way a real partition would. A stream cluster carries each group's raft
// traffic on a pipeNet of its own too.
type pipeNet struct {
	mu        sync.Mutex
	listeners map[raft.ServerAddress]*pipeListener
	cut       map[[2]raft.ServerAddress]bool
	conns     map[[2]raft.ServerAddress][]net.Conn
}

func newPipeNet() *pipeNet {
	return &pipeNet{
		listeners: map[raft.ServerAddress]*pipeListener{},
		cut:       map[[2]raft.ServerAddress]bool{},
		conns:     map[[2]raft.ServerAddress][]net.Conn{},
	}
}

// layer returns node addr's call layer, replacing any earlier one.
func (p *pipeNet) layer(addr raft.ServerAddress) *pipeListener {
	l := &pipeListener{net: p, addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
	p.mu.Lock()
	p.listeners[addr] = l
	p.mu.Unlock()
	return l
}

func pairOf(a, b raft.ServerAddress) [2]raft.ServerAddress {
	if a > b {
		a, b = b, a
	}
	return [2]raft.ServerAddress{a, b}
}

// setCut cuts or heals the link between a and b. Cutting closes the
// connections already open between them.
func (p *pipeNet) setCut(a, b raft.ServerAddress, cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := pairOf(a, b)
	if !cut {
		delete(p.cut, k)
		return
	}
	p.cut[k] = true
	for _, c := range p.conns[k] {
		_ = c.Close()
	}
	delete(p.conns, k)
}

// healAll heals every link.
func (p *pipeNet) healAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.cut)
}

func (p *pipeNet) dial(from, to raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	p.mu.Lock()
	l := p.listeners[to]
	k := pairOf(from, to)
	if p.cut[k] || l == nil {
		p.mu.Unlock()
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: syscall.ECONNREFUSED}
	}
	client, server := net.Pipe()
	p.conns[k] = append(p.conns[k], client, server)
	p.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
	case <-t.C:
	}
	_ = client.Close()
	_ = server.Close()
	return nil, &net.OpError{Op: "dial", Net: "pipe", Err: errors.New("no one accepting")}
}

// pipeListener is one node's end: a raft.StreamLayer over pipeNet.
type pipeListener struct {
	net   *pipeNet
	addr  raft.ServerAddress
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.net.mu.Lock()
		if l.net.listeners[l.addr] == l {
			delete(l.net.listeners, l.addr)
		}
		l.net.mu.Unlock()
	})
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr(l.addr) }

func (l *pipeListener) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-l.done:
		return nil, fmt.Errorf("layer of %s is closed", l.addr)
	default:
	}
	return l.net.dial(l.addr, address, timeout)
}

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }
