package cluster

import (
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Why elections happen, as this node can tell.
//
// Each node counts the elections it starts and the leaderships it loses, per
// group, with the cause it can see from where it stands:
//
//   - candidacy "leader_gone": an early election after the leader's process
//     was seen to die (failfast.go);
//   - candidacy "transfer": this node stood while it was still hearing from
//     the leader, which only happens when the leader hands over;
//   - candidacy "first_election": no leader heard from since this node
//     started (a new cluster, or a restart);
//   - candidacy "heartbeat_timeout": the leader went silent for the heartbeat
//     timeout (a pause, a partition, or a leader too slow to send heartbeats);
//   - step-down "transfer" (this node handed over), "shutdown" (this node is
//     stopping) or "lost_quorum" (no quorum contact for the lease timeout, or
//     a higher term seen).
//
// The recent events also list each leadership this node won ("leader",
// cause "elected"), so they show who took over and when.
//
// On a settled cluster without faults every counter but "transfer" (leader
// balancing) should stay still.
const (
	CauseLeaderGone       = "leader_gone"
	CauseTransfer         = "transfer"
	CauseHeartbeatTimeout = "heartbeat_timeout"
	CauseLostQuorum       = "lost_quorum"
	CauseShutdown         = "shutdown"
	CauseFirstElection    = "first_election"
	CauseElected          = "elected"

	recentEventsKept = 32
	// transferWindow is how long after this node asked for a handover a
	// step-down is put down to it.
	transferWindow = 10 * time.Second
)

// ElectionEvent is one candidacy or step-down of this node.
type ElectionEvent struct {
	At    time.Time `json:"at"`
	Group string    `json:"group"`
	Event string    `json:"event"` // "candidate", "leader" or "step_down"
	Cause string    `json:"cause"`
	Term  uint64    `json:"term"`
}

// electionLog is one group's record of its candidacies and step-downs.
type electionLog struct {
	mu          sync.Mutex
	state       raft.RaftState
	earlyAt     time.Time // when an early election last shortened the timeouts
	transferAt  time.Time // when this node last handed leadership over
	candidacies map[string]uint64
	stepDowns   map[string]uint64
}

// recentEvents is a node-wide ring of the latest events of one kind, for
// the status: the newest recentEventsKept, oldest first.
type recentEvents[T any] struct {
	mu     sync.Mutex
	events []T
}

func (r *recentEvents[T]) add(e T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == recentEventsKept {
		r.events = append(r.events[:0:0], r.events[1:]...)
	}
	r.events = append(r.events, e)
}

func (r *recentEvents[T]) list() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T{}, r.events...)
}

func (g *group) noteEarlyElection() {
	g.elections.mu.Lock()
	g.elections.earlyAt = time.Now()
	g.elections.mu.Unlock()
}

func (g *group) noteTransfer() {
	g.elections.mu.Lock()
	g.elections.transferAt = time.Now()
	g.elections.mu.Unlock()
}

// noteState classifies a change of this node's raft state; it returns the
// event to record, if the change is one.
func (g *group) noteState(s raft.RaftState, stopping bool, heartbeat time.Duration) (ElectionEvent, bool) {
	l := &g.elections
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := l.state
	l.state = s
	ev := ElectionEvent{At: time.Now(), Group: g.name, Term: g.raft.CurrentTerm()}
	switch {
	case s == raft.Candidate && prev != raft.Candidate:
		ev.Event = "candidate"
		switch {
		case g.raft.LastContact().IsZero():
			ev.Cause = CauseFirstElection // nothing heard from any leader since start
		case time.Since(l.earlyAt) < earlyElectionWindow:
			ev.Cause = CauseLeaderGone
		case time.Since(g.raft.LastContact()) < heartbeat:
			ev.Cause = CauseTransfer
		default:
			ev.Cause = CauseHeartbeatTimeout
		}
		if l.candidacies == nil {
			l.candidacies = map[string]uint64{}
		}
		l.candidacies[ev.Cause]++
	case prev == raft.Leader && s != raft.Leader:
		ev.Event = "step_down"
		switch {
		case stopping || s == raft.Shutdown:
			ev.Cause = CauseShutdown
		case time.Since(l.transferAt) < transferWindow:
			ev.Cause = CauseTransfer
		default:
			ev.Cause = CauseLostQuorum
		}
		if l.stepDowns == nil {
			l.stepDowns = map[string]uint64{}
		}
		l.stepDowns[ev.Cause]++
	case s == raft.Leader && prev != raft.Leader:
		// Not counted: a leadership won follows a candidacy that was.
		ev.Event, ev.Cause = "leader", CauseElected
	default:
		return ev, false
	}
	return ev, true
}

// electionCounts returns both counters with every cause present, zero or
// not, so a dashboard sees the series before the first election.
func (g *group) electionCounts() (candidacies, stepDowns map[string]uint64) {
	candidacies = map[string]uint64{CauseHeartbeatTimeout: 0, CauseLeaderGone: 0, CauseTransfer: 0, CauseFirstElection: 0}
	stepDowns = map[string]uint64{CauseLostQuorum: 0, CauseTransfer: 0, CauseShutdown: 0}
	g.elections.mu.Lock()
	defer g.elections.mu.Unlock()
	maps.Copy(candidacies, g.elections.candidacies)
	maps.Copy(stepDowns, g.elections.stepDowns)
	return candidacies, stepDowns
}
