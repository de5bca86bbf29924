package chaos

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// registerWorkload does reads, blind writes and compare-and-swaps (PUT with
// If-Match) on a few keys. Every written value is unique, so a read names
// the write it saw.
type registerWorkload struct {
	keys   []string
	prefix string
	// lastRev is per worker: the revision each worker last saw per key, so
	// its CAS operations have a fair chance to succeed.
	lastRev []map[string]uint64
}

func newRegisterWorkload(runID string, keys, workers int) *registerWorkload {
	w := &registerWorkload{prefix: "chaos/" + runID + "/reg/"}
	for i := range keys {
		w.keys = append(w.keys, fmt.Sprintf("%s%d", w.prefix, i))
	}
	for range workers {
		w.lastRev = append(w.lastRev, map[string]uint64{})
	}
	return w
}

func (w *registerWorkload) Name() string { return "register" }

func (w *registerWorkload) Step(ctx context.Context, cl *client, seq int) {
	key := w.keys[cl.rng.IntN(len(w.keys))]
	seen := w.lastRev[cl.id]
	switch r := cl.rng.IntN(10); {
	case r < 4:
		op := cl.do(ctx, Op{F: "read", Key: key})
		if op.Outcome == OK && op.Found {
			seen[key] = op.Rev
		}
	case r < 7:
		v := fmt.Sprintf("w%d-%d", cl.id, seq)
		op := cl.do(ctx, Op{F: "write", Key: key, Value: v})
		if op.Outcome == OK {
			seen[key] = op.Rev
		}
	default:
		v := fmt.Sprintf("c%d-%d", cl.id, seq)
		exp := seen[key]
		if exp == 0 {
			exp = 1 // never matches a live key: a CAS that must fail
		}
		op := cl.do(ctx, Op{F: "cas", Key: key, Value: v, Expect: exp})
		if op.Rev != 0 {
			seen[key] = op.Rev // new revision, or the current one from a 412
		}
	}
}

// regState is the model's state of one key. rev is unknown after a write
// whose outcome was indeterminate, until a read reveals it.
type regState struct {
	exists   bool
	value    string
	rev      uint64
	revKnown bool
}

type regInput struct {
	F      string
	Key    string
	Value  string
	Expect uint64
}

type regOutput struct {
	Outcome Outcome
	Found   bool
	Value   string
	Rev     uint64
}

// registerModel is the sequential specification of one key with revisions.
// It is nondeterministic only where the history cannot tell: an
// indeterminate CAS against an unknown revision may or may not have
// applied. An indeterminate operation gets an infinite return time, so
// porcupine may also order it after everything (= it never happened).
var registerModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(regInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []any { return []any{regState{}} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(regState), input.(regInput), output.(regOutput)
		return regStep(s, in, out)
	},
	Equal: func(a, b any) bool { return a.(regState) == b.(regState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		res := string(out.Outcome)
		switch {
		case out.Outcome == Info:
		case in.F == "read" && !out.Found:
			res = "absent"
		case in.F == "read":
			res = fmt.Sprintf("%q@%d", out.Value, out.Rev)
		case out.Outcome == OK:
			res = fmt.Sprintf("ok@%d", out.Rev)
		default:
			res = "precondition failed"
		}
		switch in.F {
		case "read":
			return "read() -> " + res
		case "write":
			return fmt.Sprintf("write(%q) -> %s", in.Value, res)
		default:
			return fmt.Sprintf("cas(@%d, %q) -> %s", in.Expect, in.Value, res)
		}
	},
	DescribeState: func(state any) string {
		s := state.(regState)
		switch {
		case !s.exists:
			return "absent"
		case !s.revKnown:
			return fmt.Sprintf("%q@?", s.value)
		default:
			return fmt.Sprintf("%q@%d", s.value, s.rev)
		}
	},
}

func regStep(s regState, in regInput, out regOutput) []any {
	written := regState{exists: true, value: in.Value}
	switch in.F {
	case "read":
		if !out.Found {
			if s.exists {
				return nil
			}
			return []any{s}
		}
		if !s.exists || s.value != out.Value || (s.revKnown && s.rev != out.Rev) {
			return nil
		}
		s.rev, s.revKnown = out.Rev, true
		return []any{s}
	case "write":
		if out.Outcome == Info {
			return []any{written}
		}
		if s.exists && s.revKnown && out.Rev <= s.rev {
			return nil // revisions only grow
		}
		written.rev, written.revKnown = out.Rev, true
		return []any{written}
	case "cas":
		match := s.exists && (!s.revKnown || s.rev == in.Expect)
		sure := s.exists && s.revKnown && s.rev == in.Expect
		switch out.Outcome {
		case OK:
			if !match || out.Rev <= in.Expect {
				return nil
			}
			written.rev, written.revKnown = out.Rev, true
			return []any{written}
		case Fail: // 412
			if sure {
				return nil
			}
			return []any{s}
		default:
			switch {
			case sure:
				return []any{written}
			case match:
				return []any{s, written}
			default:
				return []any{s}
			}
		}
	}
	return nil
}

// toPorcupine converts the history: failed writes and failed reads did not
// happen and are left out (a 412 CAS is a result and stays); indeterminate
// writes get an infinite return time.
func registerOps(ops []Op) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range ops {
		in := regInput{F: op.F, Key: op.Key, Value: op.Value, Expect: op.Expect}
		o := regOutput{Outcome: op.Outcome, Found: op.Found, Value: op.Result, Rev: op.Rev}
		ret := op.Complete
		switch {
		case op.Outcome == Info:
			ret = math.MaxInt64
		case op.Outcome == Fail && !(op.F == "cas" && op.Status == http.StatusPreconditionFailed):
			continue
		}
		out = append(out, porcupine.Operation{ClientId: op.Process, Input: in, Call: op.Invoke, Output: o, Return: ret})
	}
	return out
}

// Check runs porcupine over the history. On a violation (or when the check
// times out) it writes the visualization to outDir/linearizability.html.
func (w *registerWorkload) Check(_ context.Context, _ *Cluster, h *History, outDir string, timeout time.Duration) CheckResult {
	ops := registerOps(h.Ops())
	model := registerModel.ToModel()
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	cr := CheckResult{Checker: "linearizability (porcupine)", Details: map[string]any{"operations_checked": len(ops), "keys": len(w.keys)}}
	switch res {
	case porcupine.Ok:
		cr.Valid = "yes"
	case porcupine.Illegal:
		cr.Valid = "no"
		cr.Problems = append(cr.Problems, "the history is not linearizable")
	default:
		cr.Valid = "unknown"
		cr.Problems = append(cr.Problems, fmt.Sprintf("the checker did not finish within %s", timeout))
	}
	if res != porcupine.Ok && outDir != "" {
		path := filepath.Join(outDir, "linearizability.html")
		if err := porcupine.VisualizePath(model, info, path); err != nil {
			cr.Problems = append(cr.Problems, "visualization: "+err.Error())
		} else {
			cr.Artifacts = append(cr.Artifacts, path)
		}
	}
	return cr
}
