package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/raftkv/raftkv/snapshot"
)

func populated(t testing.TB, n int) *harness {
	h := newHarness(t)
	for i := 0; i < n; i++ {
		h.put(fmt.Sprintf("key/%04d", i), fmt.Sprintf("value %d", i))
	}
	return h
}

func TestSnapshotIsPointInTime(t *testing.T) {
	h := populated(t, 100)
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want := dump(h.f)
	// Writes after Snapshot must not leak into the checkpoint.
	h.put("key/0000", "changed")
	h.apply(EncodeDelete("key/0001", Condition{}))
	h.put("zzz", "new")
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := New("shard-1")
	if err := restore(g, sink.Bytes()); err != nil {
		t.Fatal(err)
	}
	if !sameKVs(dump(g), want) || g.AppliedIndex() != 100 {
		t.Fatalf("restored state is not the state at Snapshot (applied %d)", g.AppliedIndex())
	}
}

// TestCorruptSnapshotKeepsState damages a checkpoint in many ways; every
// Restore must fail and leave the live state and applied index as they were.
func TestCorruptSnapshotKeepsState(t *testing.T) {
	good := persist(t, populated(t, 20).f)
	h := populated(t, 5)
	h.apply(EncodeDelete("key/0002", Condition{}))
	want, wantIdx := dump(h.f), h.f.AppliedIndex()

	damaged := map[string][]byte{"empty": nil, "trailing byte": append(bytes.Clone(good), 1)}
	for i := 0; i < len(good); i += 7 {
		b := bytes.Clone(good)
		b[i] ^= 0x41
		damaged[fmt.Sprintf("flip %d", i)] = b
		damaged[fmt.Sprintf("truncate %d", i)] = good[:i]
	}
	for name, b := range damaged {
		if err := restore(h.f, b); err == nil {
			t.Fatalf("%s: Restore accepted a damaged checkpoint", name)
		}
		if !sameKVs(dump(h.f), want) || h.f.AppliedIndex() != wantIdx {
			t.Fatalf("%s: failed Restore changed the live state", name)
		}
	}
	if err := restore(h.f, good); err != nil {
		t.Fatalf("undamaged checkpoint: %v", err)
	}
	if h.f.Len() != 20 || h.f.AppliedIndex() != 20 {
		t.Fatalf("after good restore: Len %d AppliedIndex %d", h.f.Len(), h.f.AppliedIndex())
	}
}

// craft writes a checkpoint with hand-made records.
func craft(t *testing.T, hdr snapshot.Header, recs ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, hdr)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range recs {
		if err := w.WriteRecord(appendRecord(nil, e)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRestoreRejectsImpossibleState(t *testing.T) {
	hdr := snapshot.Header{Kind: SnapshotKind, Group: "shard-1", Index: 10, Term: 1}
	ok := entry{key: "a", value: []byte("v"), create: 2, mod: 5, version: 3}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"wrong kind", craft(t, snapshot.Header{Kind: "registry", Group: "shard-1", Index: 10}), ErrBadSnapshot},
		{"wrong group", craft(t, snapshot.Header{Kind: SnapshotKind, Group: "shard-2", Index: 10}), ErrBadSnapshot},
		{"unsorted", craft(t, hdr, entry{key: "b", create: 1, mod: 1, version: 1}, ok), ErrBadSnapshot},
		{"duplicate", craft(t, hdr, ok, ok), ErrBadSnapshot},
		{"mod past index", craft(t, hdr, entry{key: "a", create: 1, mod: 11, version: 1}), ErrBadSnapshot},
		{"create after mod", craft(t, hdr, entry{key: "a", create: 6, mod: 5, version: 1}), ErrBadSnapshot},
		{"zero version", craft(t, hdr, entry{key: "a", create: 1, mod: 1}), ErrBadSnapshot},
		{"too many versions", craft(t, hdr, entry{key: "a", create: 2, mod: 3, version: 3}), ErrBadSnapshot},
		{"garbage record", func() []byte {
			var buf bytes.Buffer
			w, _ := snapshot.NewWriter(&buf, hdr)
			_ = w.WriteRecord([]byte{0xff})
			_ = w.Close()
			return buf.Bytes()
		}(), ErrMalformed},
	}
	for _, tc := range cases {
		f := New("shard-1")
		if err := restore(f, tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if f.Len() != 0 || f.AppliedIndex() != 0 {
			t.Errorf("%s: state changed", tc.name)
		}
	}
	f := New("shard-1")
	if err := restore(f, craft(t, hdr, ok, entry{key: "b", value: []byte{}, create: 10, mod: 10, version: 1})); err != nil {
		t.Fatalf("valid hand-made checkpoint: %v", err)
	}
}

type failingSink struct {
	memSink
	after int
}

func (s *failingSink) Write(p []byte) (int, error) {
	if s.after -= len(p); s.after < 0 {
		return 0, io.ErrShortWrite
	}
	return s.memSink.Write(p)
}

func TestPersistCancelsOnError(t *testing.T) {
	h := populated(t, 5000)
	snap, _ := h.f.Snapshot()
	sink := &failingSink{after: 1000}
	if err := snap.Persist(sink); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("Persist: got %v", err)
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("cancelled=%v closed=%v, want cancelled only", sink.cancelled, sink.closed)
	}
}
