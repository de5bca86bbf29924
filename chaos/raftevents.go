package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	kvclient "github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/nodeproc"
)

// raftWatcher follows the live event stream (GET /v1/events) of every node
// of a cluster while a measurement runs, so that a failover round sees the
// election happen (who stood, why, who won, when) instead of polling for
// its result. A stream that ends (its node was killed, or cut off) is
// dialled again until the watcher stops; events a dead node would have
// sent are simply not there, which is the truth of what it saw.
type raftWatcher struct {
	stop func()
	wg   sync.WaitGroup

	mu     sync.Mutex
	events []kvclient.Event
	wake   chan struct{} // closed and replaced on every new event
}

// watchRaftEvents starts following nodes' streams; the caller owns the
// watcher and stops it with close.
func watchRaftEvents(ctx context.Context, nodes []*nodeproc.Node) *raftWatcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &raftWatcher{stop: cancel, wake: make(chan struct{})}
	for _, n := range nodes {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.follow(ctx, n)
		}()
	}
	return w
}

// follow reads one node's stream, reconnecting until ctx ends.
func (w *raftWatcher) follow(ctx context.Context, n *nodeproc.Node) {
	for ctx.Err() == nil {
		_ = adminClient(n.HTTPAddr).Events(ctx, func(e kvclient.Event) error {
			w.add(e)
			return nil
		})
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (w *raftWatcher) add(e kvclient.Event) {
	w.mu.Lock()
	w.events = append(w.events, e)
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

// close stops every stream and waits for the readers to return.
func (w *raftWatcher) close() {
	w.stop()
	w.wg.Wait()
}

// waitLeader waits until a node other than old reports, in its own event
// stream, that it became leader of group at or after since, and returns
// that event. It gives up at the deadline.
func (w *raftWatcher) waitLeader(ctx context.Context, group, old string, since, deadline time.Time) (kvclient.Event, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for seen := 0; ; {
		w.mu.Lock()
		events, wake := w.events, w.wake
		w.mu.Unlock()
		for ; seen < len(events); seen++ {
			e := events[seen]
			if e.Type == "leader" && e.Group == group && e.Leader != "" && e.Leader == e.Node && e.Node != old && !e.At.Before(since) {
				return e, nil
			}
		}
		select {
		case <-wake:
		case <-timer.C:
			return kvclient.Event{}, fmt.Errorf("no node's event stream reported a new leader of %s within %s", group, time.Until(deadline)+time.Since(since))
		case <-ctx.Done():
			return kvclient.Event{}, ctx.Err()
		}
	}
}

// between returns the events of group (and the nodes' state changes) that
// happened in [from, to], in the order they arrived.
func (w *raftWatcher) between(group string, from, to time.Time) []kvclient.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []kvclient.Event
	for _, e := range w.events {
		if e.At.Before(from) || e.At.After(to) || e.Group != group {
			continue
		}
		switch e.Type {
		case "leader", "election", "state", "heartbeat_failed", "heartbeat_resumed":
			out = append(out, e)
		}
	}
	return out
}

// RoundEvent is one raft event a surviving node reported during a
// failover round, timed from the fault.
type RoundEvent struct {
	AtMs   float64 `json:"at_ms"`
	Node   string  `json:"node"`
	Type   string  `json:"type"`
	State  string  `json:"state,omitempty"`
	Event  string  `json:"event,omitempty"`
	Cause  string  `json:"cause,omitempty"`
	Leader string  `json:"leader,omitempty"`
	Peer   string  `json:"peer,omitempty"`
	Term   uint64  `json:"term,omitempty"`
}

func roundEvents(events []kvclient.Event, t0 time.Time) []RoundEvent {
	out := make([]RoundEvent, 0, len(events))
	for _, e := range events {
		out = append(out, RoundEvent{AtMs: ms(e.At.Sub(t0)), Node: e.Node, Type: e.Type, State: e.State,
			Event: e.Event, Cause: e.Cause, Leader: e.Leader, Peer: e.Peer, Term: e.Term})
	}
	return out
}

// String is the event as a failover log line shows it.
func (e RoundEvent) String() string {
	s := fmt.Sprintf("+%.0f ms %s %s", e.AtMs, e.Node, e.Type)
	switch e.Type {
	case "leader":
		if e.Leader == "" {
			s += ": no leader"
		} else {
			s += ": " + e.Leader
		}
	case "state":
		s += ": " + e.State
	case "election":
		s += ": " + e.Event
		if e.Cause != "" {
			s += " (" + e.Cause + ")"
		}
	case "heartbeat_failed", "heartbeat_resumed":
		s += ": " + e.Peer
	}
	if e.Term != 0 {
		s += fmt.Sprintf(" term %d", e.Term)
	}
	return s
}
