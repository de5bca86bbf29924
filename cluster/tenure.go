package cluster

import (
	"context"
	"sync"
	"time"
)

// tenure gives the requests a node forwards to a group's leader one shared
// context per leader it sees: the context ends forwardGrace after this node
// sees another leader (or none). A forwarded request stops waiting for its
// answer when that context ends, since the leader it went to was deposed,
// perhaps cut off by a partition. One context per leader, moved by the
// group's observer, replaces a watcher goroutine per forwarded request.
type tenure struct {
	current func() string // the leader raft knows of now, "" for none
	grace   time.Duration // how long a replaced leader's tenure lasts on

	mu     sync.Mutex
	leader string
	ctx    context.Context
	end    context.CancelFunc
}

func newTenure(current func() string, grace time.Duration) *tenure {
	return &tenure{current: current, grace: grace}
}

// of returns the context of leader's tenure as this node sees it. When
// leader is not the leader raft knows of now (it changed since the caller
// asked), the returned context ends after the grace.
func (t *tenure) of(leader string) context.Context {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx != nil && t.leader == leader {
		return t.ctx
	}
	if now := t.current(); now == leader {
		t.moveLocked(now)
		return t.ctx
	}
	// Already replaced: give it the grace a deposed leader gets.
	ctx, end := context.WithCancel(context.Background())
	time.AfterFunc(t.grace, end)
	return ctx
}

// changed is called on every leader change this node observes: the
// tenure moves to the leader raft knows of now, and the previous tenure
// ends after the grace.
func (t *tenure) changed() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := t.current(); t.ctx == nil || t.leader != now {
		t.moveLocked(now)
	}
}

func (t *tenure) moveLocked(leader string) {
	if t.end != nil {
		// A planned handover lets the old leader finish what it started,
		// and its answers may still be on the way: they get the grace.
		time.AfterFunc(t.grace, t.end)
	}
	t.leader = leader
	t.ctx, t.end = context.WithCancel(context.Background())
}
