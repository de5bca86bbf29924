package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The live event stream (GET /v1/events): what this node's raft groups do,
// as it happens, fed by hashicorp/raft's observers on every group and by
// the node's own checkpoint and transaction-recovery code. It is this
// node's view only; watching a failover means following the nodes that
// survive it.

// Event types.
const (
	EventLeader           = "leader"            // the group's leader, as this node sees it, changed (Leader may be "")
	EventState            = "state"             // this node's raft state in the group changed
	EventElection         = "election"          // a candidacy, leadership won or step-down, with its cause (elections.go)
	EventPeerAdded        = "peer_added"        // a server joined the group's configuration
	EventPeerRemoved      = "peer_removed"      // a server left it
	EventHeartbeatFailed  = "heartbeat_failed"  // as leader, this node could not reach a follower
	EventHeartbeatResumed = "heartbeat_resumed" // and then could again
	EventCheckpoint       = "checkpoint"        // a checkpoint was written (taken here, or sent by the leader)
	EventCheckpointLoaded = "checkpoint_loaded" // the state machine was replaced by a checkpoint the leader sent
	EventTxnRecovered     = "txn_recovered"     // recovery finished a transaction (txn_recovery.go)
	// EventOverflow ends a stream whose reader fell behind: it lost the
	// events after this one and should reconnect (and re-read state).
	EventOverflow = "overflow"
)

// Event is one entry of the stream. Fields that do not apply to its type
// are empty.
type Event struct {
	At    time.Time `json:"at"`
	Node  string    `json:"node"`
	Type  string    `json:"type"`
	Group string    `json:"group,omitempty"`
	// Leader, State, Term: leader, state and election events.
	Leader string `json:"leader,omitempty"`
	State  string `json:"state,omitempty"`
	Term   uint64 `json:"term,omitempty"`
	// Event and Cause: election events (ElectionEvent's).
	Event string `json:"event,omitempty"`
	Cause string `json:"cause,omitempty"`
	// Peer: peer and heartbeat events.
	Peer string `json:"peer,omitempty"`
	// Index, Bytes, Ms: checkpoint events.
	Index uint64 `json:"index,omitempty"`
	Bytes int64  `json:"bytes,omitempty"`
	Ms    int64  `json:"ms,omitempty"`
	// Txn, Outcome, Error: transaction recoveries.
	Txn     string `json:"txn,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Error   string `json:"error,omitempty"`
}

// eventBuffer is how many events a subscriber may be behind before its
// stream is ended with an overflow.
const eventBuffer = 256

// eventHub fans events out to the subscribers. Publishing never blocks:
// a subscriber whose buffer is full is dropped (its channel closed after an
// overflow event), so a slow reader cannot slow raft down.
type eventHub struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

func (h *eventHub) publish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		// The last slot is kept for the overflow notice, so the reader
		// gets every event before it, in order, then the notice. Only
		// publish sends, under mu, so the slot cannot be taken meanwhile.
		if len(ch) < cap(ch)-1 {
			ch <- e
			continue
		}
		ch <- Event{At: e.At, Node: e.Node, Type: EventOverflow}
		close(ch)
		delete(h.subs, ch)
	}
}

// Events subscribes to this node's event stream. The channel is closed
// when cancel is called, when the node stops, or after an overflow event.
func (n *Node) Events() (<-chan Event, func()) {
	ch := make(chan Event, eventBuffer+1) // +1: the overflow notice
	h := &n.events
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan Event]struct{}{}
	}
	select {
	case <-n.stop:
		close(ch) // a stopping node has nothing more to say
		h.mu.Unlock()
		return ch, func() {}
	default:
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if _, ok := h.subs[ch]; ok {
				delete(h.subs, ch)
				close(ch)
			}
		})
	}
	return ch, cancel
}

// closeEvents ends every stream; the node is stopping.
func (n *Node) closeEvents() {
	h := &n.events
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		close(ch)
		delete(h.subs, ch)
	}
}

// publish stamps and sends one event of group g (nil: the node's own).
func (n *Node) publish(g *group, e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.Node = n.cfg.NodeID
	if g != nil {
		e.Group = g.name
	}
	n.events.publish(e)
}

// observationEvent turns one raft observation of group g into an event.
func observationEvent(g *group, o raft.Observation) (Event, bool) {
	switch d := o.Data.(type) {
	case raft.LeaderObservation:
		return Event{Type: EventLeader, Leader: string(d.LeaderID), Term: g.raft.CurrentTerm()}, true
	case raft.RaftState:
		return Event{Type: EventState, State: d.String(), Term: g.raft.CurrentTerm()}, true
	case raft.PeerObservation:
		if d.Removed {
			return Event{Type: EventPeerRemoved, Peer: string(d.Peer.ID)}, true
		}
		return Event{Type: EventPeerAdded, Peer: string(d.Peer.ID)}, true
	case raft.FailedHeartbeatObservation:
		return Event{Type: EventHeartbeatFailed, Peer: string(d.PeerID)}, true
	case raft.ResumedHeartbeatObservation:
		return Event{Type: EventHeartbeatResumed, Peer: string(d.PeerID)}, true
	}
	return Event{}, false
}
