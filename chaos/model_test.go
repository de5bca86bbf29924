package chaos

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// The register model must accept what a linearizable store can do and
// reject what it cannot; these histories are small enough to reason about
// by hand.
func TestRegisterModel(t *testing.T) {
	w := func(v string, rev uint64, out Outcome, call, ret int64) Op {
		return Op{F: "write", Key: "k", Value: v, Rev: rev, Outcome: out, Invoke: call, Complete: ret}
	}
	r := func(v string, rev uint64, call, ret int64) Op {
		return Op{F: "read", Key: "k", Found: v != "", Result: v, Rev: rev, Outcome: OK, Invoke: call, Complete: ret}
	}
	cas := func(exp uint64, v string, rev uint64, out Outcome, status int, call, ret int64) Op {
		return Op{F: "cas", Key: "k", Expect: exp, Value: v, Rev: rev, Outcome: out, Status: status, Invoke: call, Complete: ret}
	}
	cases := []struct {
		name string
		ops  []Op
		ok   bool
	}{
		{"read after acknowledged write sees it", []Op{w("a", 5, OK, 0, 1), r("a", 5, 2, 3)}, true},
		{"stale read after acknowledged write", []Op{w("a", 5, OK, 0, 1), w("b", 6, OK, 2, 3), r("a", 5, 4, 5)}, false},
		{"read of a value nobody wrote", []Op{w("a", 5, OK, 0, 1), r("z", 5, 2, 3)}, false},
		{"lost acknowledged write", []Op{w("a", 5, OK, 0, 1), r("", 0, 2, 3)}, false},
		{"concurrent read may see either", []Op{w("a", 5, OK, 0, 1), w("b", 6, OK, 2, 5), r("a", 5, 3, 4)}, true},
		{"indeterminate write seen later", []Op{w("a", 5, OK, 0, 1), w("b", 0, Info, 2, 3), r("b", 9, 4, 5), r("b", 9, 6, 7)}, true},
		{"indeterminate write never seen", []Op{w("a", 5, OK, 0, 1), w("b", 0, Info, 2, 3), r("a", 5, 4, 5)}, true},
		{"failed write is left out", []Op{w("a", 5, OK, 0, 1), w("b", 0, Fail, 2, 3), r("a", 5, 4, 5)}, true},
		{"revision going backwards", []Op{w("a", 5, OK, 0, 1), w("b", 4, OK, 2, 3)}, false},
		{"cas on the current revision", []Op{w("a", 5, OK, 0, 1), cas(5, "c", 7, OK, 200, 2, 3), r("c", 7, 4, 5)}, true},
		{"cas succeeding on a stale revision", []Op{w("a", 5, OK, 0, 1), w("b", 6, OK, 2, 3), cas(5, "c", 7, OK, 200, 4, 5)}, false},
		{"cas refused although the revision matched", []Op{w("a", 5, OK, 0, 1), cas(5, "c", 6, Fail, 412, 2, 3)}, false},
		{"indeterminate cas that applied", []Op{w("a", 5, OK, 0, 1), cas(5, "c", 0, Info, 0, 2, 3), r("c", 8, 4, 5)}, true},
	}
	model := registerModel.ToModel()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := porcupine.CheckOperations(model, registerOps(tc.ops))
			if got != tc.ok {
				t.Fatalf("linearizable = %v, want %v", got, tc.ok)
			}
		})
	}
}

func TestMaxGap(t *testing.T) {
	times := []int64{0, 10, 20, 500, 510, 520, 2000}
	if g := maxGap(times, 100, 400); g != 480 {
		t.Fatalf("gap spanning the interval = %d, want 480", g)
	}
	if g := maxGap(times, 505, 600); g != 1480 {
		t.Fatalf("gap running past the interval = %d, want 1480", g)
	}
}
