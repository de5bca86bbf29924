package histo

import (
	"testing"
	"time"
)

func TestObservationsLandInTheirBucketsCumulatively(t *testing.T) {
	var h Histogram
	h.Observe(10 * time.Microsecond)  // first bucket (≤ 50 µs)
	h.Observe(50 * time.Microsecond)  // still the first: bounds are inclusive
	h.Observe(300 * time.Microsecond) // ≤ 400 µs
	h.Observe(time.Minute)            // above every bound
	s := h.Snapshot()
	if s.Count != 4 {
		t.Fatalf("count %d, want 4", s.Count)
	}
	if got := s.Buckets[50e-6]; got != 2 {
		t.Errorf("≤ 50 µs: %d, want 2", got)
	}
	if got := s.Buckets[200e-6]; got != 2 {
		t.Errorf("≤ 200 µs: %d, want 2", got)
	}
	if got := s.Buckets[400e-6]; got != 3 {
		t.Errorf("≤ 400 µs: %d, want 3", got)
	}
	if got := s.Buckets[Bounds[len(Bounds)-1]]; got != 3 {
		t.Errorf("≤ the last bound: %d, want 3 (a minute is above it)", got)
	}
	if want := (60*time.Second + 360*time.Microsecond).Seconds(); s.Sum < want-1e-9 || s.Sum > want+1e-9 {
		t.Errorf("sum %v s, want %v", s.Sum, want)
	}
	if n, sum := h.Totals(); n != 4 || sum != s.Sum {
		t.Errorf("totals %d, %v; snapshot %d, %v", n, sum, s.Count, s.Sum)
	}
}

func TestBoundsRiseAndReachSeconds(t *testing.T) {
	for i := 1; i < len(Bounds); i++ {
		if Bounds[i] <= Bounds[i-1] {
			t.Fatalf("bound %d (%v) not above %v", i, Bounds[i], Bounds[i-1])
		}
	}
	if last := Bounds[len(Bounds)-1]; last < 10 {
		t.Errorf("the last bound is %v s; a checkpoint of a big node takes seconds", last)
	}
}
