package cluster

import (
	"context"
	"sync"
	"testing"
	"time"
)

// seenLeader stands in for raft's view of the leader.
type seenLeader struct {
	mu sync.Mutex
	id string
}

func (s *seenLeader) set(id string) { s.mu.Lock(); s.id = id; s.mu.Unlock() }
func (s *seenLeader) get() string   { s.mu.Lock(); defer s.mu.Unlock(); return s.id }

func waitDone(t *testing.T, ctx context.Context, within time.Duration, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(within):
		t.Fatalf("%s: still waiting after %s", what, within)
	}
}

func TestARequestForwardedToADeposedLeaderStopsWaitingAfterTheGrace(t *testing.T) {
	raftSays := &seenLeader{id: "n1"}
	tn := newTenure(raftSays.get, 10*time.Millisecond)

	toN1 := tn.of("n1")
	if tn.of("n1") != toN1 {
		t.Fatal("two requests to the same leader got different tenures")
	}
	tn.changed() // an observation that did not change the leader
	if toN1.Err() != nil {
		t.Fatal("n1's tenure ended although n1 still leads")
	}

	raftSays.set("n2")
	tn.changed()
	waitDone(t, toN1, 10*time.Second, "request to the deposed n1")

	toN2 := tn.of("n2")
	if toN2.Err() != nil {
		t.Fatal("the new leader's tenure ended at once")
	}
}

func TestAReplacedLeadersAnswersGetTheGrace(t *testing.T) {
	raftSays := &seenLeader{id: "n1"}
	tn := newTenure(raftSays.get, time.Hour)
	toN1 := tn.of("n1")
	raftSays.set("n2")
	tn.changed()
	if toN1.Err() != nil {
		t.Fatal("n1's tenure ended at the change, before its grace")
	}
}

func TestARequestToALeaderAlreadyReplacedGetsOnlyTheGrace(t *testing.T) {
	raftSays := &seenLeader{id: "n1"}
	tn := newTenure(raftSays.get, 10*time.Millisecond)
	tn.of("n1")
	raftSays.set("n2")
	tn.changed()
	toN2 := tn.of("n2")

	// A caller that read n1 from raft just before the change.
	stale := tn.of("n1")
	waitDone(t, stale, 10*time.Second, "request to the replaced n1")
	if toN2.Err() != nil {
		t.Fatal("a stale request to n1 ended n2's tenure")
	}
}

func TestTheTenureMovesOnBeforeTheObserverReportsTheChange(t *testing.T) {
	raftSays := &seenLeader{id: "n1"}
	tn := newTenure(raftSays.get, 10*time.Millisecond)
	toN1 := tn.of("n1")
	raftSays.set("n2") // the observer has not reported this yet

	toN2 := tn.of("n2")
	waitDone(t, toN1, 10*time.Second, "n1's tenure once a request went to n2")
	tn.changed() // the late observation
	if tn.of("n2") != toN2 {
		t.Fatal("the late observation started a second tenure of n2")
	}
	if toN2.Err() != nil {
		t.Fatal("the late observation ended n2's tenure")
	}
}

func TestNoLeaderEndsTheTenureOfTheLastOne(t *testing.T) {
	raftSays := &seenLeader{id: "n1"}
	tn := newTenure(raftSays.get, 10*time.Millisecond)
	toN1 := tn.of("n1")
	raftSays.set("")
	tn.changed()
	waitDone(t, toN1, 10*time.Second, "request to n1 after it lost leadership")
}
