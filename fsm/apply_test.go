package fsm

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

func TestApplyRules(t *testing.T) {
	type step struct {
		cmd     []byte
		wantErr error
		found   bool
		deleted bool
		kv      KV // expected Result.KV (Value compared as a string; a put's carries none)
	}
	put := func(k, v string, c Condition) []byte { return EncodePut(k, []byte(v), c) }
	del := func(k string, c Condition) []byte { return EncodeDelete(k, c) }
	rev := func(r uint64) Condition { return Condition{Kind: CondRevision, Revision: r} }
	absent := Condition{Kind: CondAbsent}
	none := Condition{}

	cases := []struct {
		name  string
		steps []step // step i is applied at log index i+1
	}{
		{"create then update", []step{
			{cmd: put("a", "1", none), kv: KV{Key: "a", CreateRevision: 1, ModRevision: 1, Version: 1}},
			{cmd: put("a", "2", none), found: true, kv: KV{Key: "a", CreateRevision: 1, ModRevision: 2, Version: 2}},
		}},
		{"delete then re-create resets version", []step{
			{cmd: put("a", "1", none), kv: KV{Key: "a", CreateRevision: 1, ModRevision: 1, Version: 1}},
			{cmd: put("a", "2", none), found: true, kv: KV{Key: "a", CreateRevision: 1, ModRevision: 2, Version: 2}},
			{cmd: del("a", none), found: true, deleted: true, kv: KV{Key: "a", Value: []byte("2"), CreateRevision: 1, ModRevision: 2, Version: 2}},
			{cmd: put("a", "3", none), kv: KV{Key: "a", CreateRevision: 4, ModRevision: 4, Version: 1}},
		}},
		{"delete missing key", []step{
			{cmd: del("nope", none)},
		}},
		{"CAS matches", []step{
			{cmd: put("a", "1", none), kv: KV{Key: "a", CreateRevision: 1, ModRevision: 1, Version: 1}},
			{cmd: put("a", "2", rev(1)), found: true, kv: KV{Key: "a", CreateRevision: 1, ModRevision: 2, Version: 2}},
		}},
		{"CAS stale revision fails and reports current", []step{
			{cmd: put("a", "1", none), kv: KV{Key: "a", CreateRevision: 1, ModRevision: 1, Version: 1}},
			{cmd: put("a", "2", none), found: true, kv: KV{Key: "a", CreateRevision: 1, ModRevision: 2, Version: 2}},
			{cmd: put("a", "3", rev(1)), wantErr: ErrPrecondition, found: true, kv: KV{Key: "a", Value: []byte("2"), CreateRevision: 1, ModRevision: 2, Version: 2}},
			{cmd: del("a", rev(1)), wantErr: ErrPrecondition, found: true, kv: KV{Key: "a", Value: []byte("2"), CreateRevision: 1, ModRevision: 2, Version: 2}},
		}},
		{"CAS on missing key never matches", []step{
			{cmd: put("a", "1", rev(0)), wantErr: ErrPrecondition},
			{cmd: del("a", rev(0)), wantErr: ErrPrecondition},
		}},
		{"create-only", []step{
			{cmd: put("a", "1", absent), kv: KV{Key: "a", CreateRevision: 1, ModRevision: 1, Version: 1}},
			{cmd: put("a", "2", absent), wantErr: ErrPrecondition, found: true, kv: KV{Key: "a", Value: []byte("1"), CreateRevision: 1, ModRevision: 1, Version: 1}},
		}},
		{"conditional delete", []step{
			{cmd: put("a", "1", none), kv: KV{Key: "a", CreateRevision: 1, ModRevision: 1, Version: 1}},
			{cmd: del("a", rev(1)), found: true, deleted: true, kv: KV{Key: "a", Value: []byte("1"), CreateRevision: 1, ModRevision: 1, Version: 1}},
			{cmd: del("a", absent)},
		}},
		{"empty value", []step{
			{cmd: put("a", "", none), kv: KV{Key: "a", CreateRevision: 1, ModRevision: 1, Version: 1}},
		}},
		{"noop", []step{
			{cmd: EncodeNoop()},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			for i, s := range tc.steps {
				before := dump(h.f)
				r := h.apply(s.cmd)
				if !errors.Is(r.Err, s.wantErr) || (s.wantErr == nil && r.Err != nil) {
					t.Fatalf("step %d: Err %v, want %v", i, r.Err, s.wantErr)
				}
				if r.Found != s.found || r.Deleted != s.deleted {
					t.Fatalf("step %d: Found=%v Deleted=%v, want %v %v", i, r.Found, r.Deleted, s.found, s.deleted)
				}
				if !sameKV(r.KV, s.kv) {
					t.Fatalf("step %d: KV %+v, want %+v", i, r.KV, s.kv)
				}
				if r.Err != nil && !sameKVs(before, dump(h.f)) {
					t.Fatalf("step %d: failed command changed the state", i)
				}
				if got := h.f.AppliedIndex(); got != uint64(i+1) {
					t.Fatalf("step %d: AppliedIndex %d", i, got)
				}
			}
		})
	}
}

func sameKV(a, b KV) bool {
	return a.Key == b.Key && string(a.Value) == string(b.Value) && a.CreateRevision == b.CreateRevision &&
		a.ModRevision == b.ModRevision && a.Version == b.Version
}

func sameKVs(a, b []KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameKV(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestApplyBatchMixedTypes(t *testing.T) {
	f := New("shard-1")
	logs := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration},
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: EncodePut("a", []byte("x"), Condition{})},
		{Index: 3, Term: 2, Type: raft.LogConfiguration},
		{Index: 4, Term: 2, Type: raft.LogCommand, Data: EncodeDelete("a", Condition{})},
	}
	out := f.ApplyBatch(logs)
	if len(out) != len(logs) {
		t.Fatalf("%d results for %d logs", len(out), len(logs))
	}
	if out[0] != nil || out[2] != nil {
		t.Fatalf("config entries returned %v, %v; want nil", out[0], out[2])
	}
	if r := out[1].(*Result); r.KV.ModRevision != 2 {
		t.Fatalf("put result %+v", r)
	}
	if r := out[3].(*Result); !r.Deleted {
		t.Fatalf("delete result %+v", r)
	}
	if f.AppliedIndex() != 4 || f.Len() != 0 {
		t.Fatalf("AppliedIndex %d Len %d", f.AppliedIndex(), f.Len())
	}
	if out := f.ApplyBatch(nil); len(out) != 0 {
		t.Fatalf("empty batch returned %d results", len(out))
	}
}

// TestReturnedValuesAreCopies checks that callers cannot reach stored
// memory through Get, List or a Result, nor through the proposal buffer.
func TestReturnedValuesAreCopies(t *testing.T) {
	h := newHarness(t)
	data := EncodePut("k", []byte("abc"), Condition{})
	r := h.apply(data)
	for i := range data {
		data[i] = 'X' // raft may reuse the entry's buffer
	}
	if r.KV.Value != nil || r.KV.ModRevision != 1 || r.KV.Version != 1 {
		t.Fatalf("a put's result carries the revisions only: %+v", r.KV)
	}
	failed := h.apply(EncodePut("k", []byte("new"), Condition{Kind: CondAbsent}))
	failed.KV.Value[0] = 'X' // the current key, returned with a refused write
	kv, _ := h.f.Get("k")
	kv.Value[1] = 'X'
	items, _ := h.f.List("", "", 0)
	items[0].Value[2] = 'X'
	if kv, _ := h.f.Get("k"); string(kv.Value) != "abc" {
		t.Fatalf("stored value changed to %q", kv.Value)
	}
}
