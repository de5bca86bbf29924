package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
)

// model is the obviously-correct reference: a map plus the same rules.
type model map[string]KV

func (m model) apply(idx uint64, c Command) (err error) {
	cur, found := m[c.Key]
	switch c.Cond.Kind {
	case CondRevision:
		if !found || cur.ModRevision != c.Cond.Revision {
			return ErrPrecondition
		}
	case CondAbsent:
		if found {
			return ErrPrecondition
		}
	}
	switch c.Type {
	case CommandPut:
		next := KV{Key: c.Key, Value: bytes.Clone(c.Value), CreateRevision: idx, ModRevision: idx, Version: 1}
		if found {
			next.CreateRevision, next.Version = cur.CreateRevision, cur.Version+1
		}
		m[c.Key] = next
	case CommandDelete:
		delete(m, c.Key)
	}
	return nil
}

func (m model) sorted() []KV {
	out := make([]KV, 0, len(m))
	for _, kv := range m {
		out = append(out, kv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// randomCommand draws from a small key space so that conditions, deletes
// and re-creates hit existing keys often.
func randomCommand(rng *rand.Rand, m model, idx uint64) []byte {
	key := fmt.Sprintf("k%02d", rng.IntN(40))
	var cond Condition
	switch rng.IntN(6) {
	case 0:
		cond = Condition{Kind: CondAbsent}
	case 1:
		cond = Condition{Kind: CondRevision, Revision: m[key].ModRevision} // usually matches
	case 2:
		cond = Condition{Kind: CondRevision, Revision: rng.Uint64N(idx + 1)} // usually stale
	}
	switch rng.IntN(10) {
	case 0:
		return EncodeNoop()
	case 1, 2, 3:
		return EncodeDelete(key, cond)
	}
	v := make([]byte, rng.IntN(20))
	for i := range v {
		v[i] = byte(rng.UintN(256))
	}
	return EncodePut(key, v, cond)
}

func TestAgainstModel(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		h := newHarness(t)
		m := model{}
		const n = 4000
		for i := 0; i < n; i++ {
			data := randomCommand(rng, m, h.idx+1)
			c, _ := Decode(data)
			r := h.apply(data)
			if err := m.apply(h.idx, c); !errors.Is(r.Err, err) || (err == nil && r.Err != nil) {
				t.Fatalf("seed %d step %d (%v %q): fsm err %v, model err %v", seed, i, c.Type, c.Key, r.Err, err)
			}
			if i == n/2 {
				h.f = restoredCopy(t, h.f)
			}
		}
		if !sameKVs(dump(h.f), m.sorted()) {
			t.Fatalf("seed %d: fsm and model differ", seed)
		}
		if h.f.AppliedIndex() != n || h.f.Len() != len(m) {
			t.Fatalf("seed %d: AppliedIndex %d Len %d, want %d %d", seed, h.f.AppliedIndex(), h.f.Len(), n, len(m))
		}
	}
}

// restoredCopy persists f and restores the checkpoint into a fresh FSM,
// asserting that nothing observable changed.
func restoredCopy(t *testing.T, f *FSM) *FSM {
	t.Helper()
	g := New(f.group)
	if err := restore(g, persist(t, f)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !sameKVs(dump(f), dump(g)) || f.AppliedIndex() != g.AppliedIndex() {
		t.Fatal("restored FSM differs from the original")
	}
	return g
}

// TestDeterminism feeds the same entries to two FSMs (one of them in
// different batch sizes) and requires byte-identical checkpoints.
func TestDeterminism(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	m := model{}
	var logs [][]byte
	for i := uint64(1); i <= 3000; i++ {
		data := randomCommand(rng, m, i)
		c, _ := Decode(data)
		_ = m.apply(i, c)
		logs = append(logs, data)
	}
	a, b := newHarness(t), newHarness(t)
	for _, d := range logs {
		a.apply(d)
	}
	for start := 0; start < len(logs); {
		end := min(len(logs), start+1+rng.IntN(64))
		batch := make([]*raftLog, 0, end-start)
		for i := start; i < end; i++ {
			batch = append(batch, commandLog(uint64(i+1), logs[i]))
		}
		b.f.ApplyBatch(batch)
		start = end
	}
	sa, sb := persist(t, a.f), persist(t, b.f)
	if !bytes.Equal(sa, sb) {
		t.Fatal("same entries produced different checkpoints")
	}
	// A restored FSM must reproduce the checkpoint exactly, too.
	if !bytes.Equal(persist(t, restoredCopy(t, a.f)), sa) {
		t.Fatal("restore then persist changed the checkpoint")
	}
}
