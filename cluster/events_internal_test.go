package cluster

import "testing"

func TestAReaderThatFallsBehindGetsAnOverflowAndIsDropped(t *testing.T) {
	var h eventHub
	h.subs = map[chan Event]struct{}{}
	slow := make(chan Event, 4)
	h.subs[slow] = struct{}{}
	for i := range 10 {
		h.publish(Event{Type: EventLeader, Term: uint64(i)})
	}
	var got []Event
	for e := range slow { // closed by the overflow
		got = append(got, e)
	}
	if len(got) != 4 || got[3].Type != EventOverflow {
		t.Fatalf("the slow reader got %+v, want three events then an overflow", got)
	}
	for i, e := range got[:3] {
		if e.Term != uint64(i) {
			t.Errorf("event %d has term %d: events arrive in order", i, e.Term)
		}
	}
	if len(h.subs) != 0 {
		t.Errorf("the dropped reader is still subscribed")
	}
	h.publish(Event{Type: EventLeader}) // nobody left: must not block or panic
}
