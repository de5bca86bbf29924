package cluster

import (
	"testing"
	"time"
)

// Transaction retries wait a random time between half the backoff and all
// of it, so two transactions in each other's way stop retrying in step.
func TestTransactionRetriesAreJittered(t *testing.T) {
	const d = 40 * time.Millisecond
	seen := map[time.Duration]bool{}
	for range 200 {
		w := jittered(d)
		if w < d/2 || w > d {
			t.Fatalf("jittered(%v) = %v, outside [%v, %v]", d, w, d/2, d)
		}
		seen[w] = true
	}
	if len(seen) < 50 {
		t.Fatalf("200 waits took only %d distinct values", len(seen))
	}
}
