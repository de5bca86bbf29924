package cluster

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// Reads that arrive while a confirmation is in flight share the next one,
// never the one already running (it began before they noted their index).
func TestReadsWaitingDuringAConfirmationShareTheNextOne(t *testing.T) {
	var c confirmer
	var rounds atomic.Int32
	release := make(chan error)
	verify := func() error {
		rounds.Add(1)
		return <-release
	}
	first := make(chan error, 1)
	go func() { first <- c.confirm(verify) }()
	waitFor(t, func() bool { return rounds.Load() == 1 })

	const later = 10
	results := make(chan error, later)
	for range later {
		go func() { results <- c.confirm(verify) }()
	}
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.waiting) == later })

	release <- nil // round 1: only the first read was waiting when it began
	if err := <-first; err != nil {
		t.Fatalf("first read: %v", err)
	}
	waitFor(t, func() bool { return rounds.Load() == 2 })
	round2 := errors.New("round 2")
	release <- round2
	for range later {
		if err := <-results; !errors.Is(err, round2) {
			t.Fatalf("a later read got %v, want the outcome of the round that began after it", err)
		}
	}
	if n := rounds.Load(); n != 2 {
		t.Fatalf("%d confirmations for %d reads, want 2", n, later+1)
	}
	if c.running || len(c.waiting) != 0 {
		t.Fatalf("confirmer not idle afterwards: running %v, %d waiting", c.running, len(c.waiting))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("condition not met within 10 s"))
		}
		time.Sleep(time.Millisecond)
	}
}
