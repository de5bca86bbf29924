package registry

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/raftkv/raftkv/snapshot"
)

type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil || !sink.closed {
		t.Fatalf("Persist: %v (closed=%v)", err, sink.closed)
	}
	snap.Release()
	return sink.Bytes()
}

func restore(f *FSM, b []byte) error { return f.Restore(nopCloser{bytes.NewReader(b)}) }

type view struct {
	ID     string
	Shards int
	Nodes  []Node
	Index  uint64
}

func viewOf(f *FSM) view {
	return view{f.ClusterID(), f.Shards(), f.Nodes(), f.AppliedIndex()}
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, ops := range [][][]byte{nil, {EncodeNoop()}, randomOps(rand.New(rand.NewPCG(5, 6)), 200)} {
		h := newHarness(t)
		for _, op := range ops {
			h.apply(op)
		}
		g := New("meta")
		if err := restore(g, persist(t, h.f)); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if !reflect.DeepEqual(viewOf(g), viewOf(h.f)) {
			t.Fatalf("restored %+v, want %+v", viewOf(g), viewOf(h.f))
		}
	}
}

func TestCorruptSnapshotKeepsState(t *testing.T) {
	src := newHarness(t)
	for _, op := range randomOps(rand.New(rand.NewPCG(8, 9)), 50) {
		src.apply(op)
	}
	good := persist(t, src.f)

	h := newHarness(t)
	h.apply(EncodeInit("other", 2))
	h.apply(EncodeUpsertNode(Node{ID: "x", HTTPAddr: "h"}))
	want := viewOf(h.f)
	damaged := map[string][]byte{}
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x20
		damaged[fmt.Sprintf("flip %d", i)] = b
		damaged[fmt.Sprintf("truncate %d", i)] = good[:i]
	}
	for name, b := range damaged {
		if err := restore(h.f, b); err == nil {
			t.Fatalf("%s: damaged checkpoint accepted", name)
		}
		if !reflect.DeepEqual(viewOf(h.f), want) {
			t.Fatalf("%s: failed restore changed the state", name)
		}
	}
}

func craft(t *testing.T, hdr snapshot.Header, recs ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, hdr)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRestoreRejectsImpossibleState(t *testing.T) {
	hdr := snapshot.Header{Kind: SnapshotKind, Group: "meta", Index: 5}
	settings := func(id string, shards byte) []byte { return append(appendString([]byte{recSettings}, id), shards) }
	node := func(id string) []byte {
		return appendString(appendString(appendString([]byte{recNode}, id), "h"), "r")
	}
	cases := map[string][]byte{
		"wrong kind":        craft(t, snapshot.Header{Kind: "kv", Group: "meta"}, settings("c", 1)),
		"wrong group":       craft(t, snapshot.Header{Kind: SnapshotKind, Group: "shard-1"}, settings("c", 1)),
		"no settings":       craft(t, hdr),
		"node first":        craft(t, hdr, node("a")),
		"half initialized":  craft(t, hdr, settings("c", 0)),
		"shards, no id":     craft(t, hdr, settings("", 2)),
		"unsorted nodes":    craft(t, hdr, settings("c", 1), node("b"), node("a")),
		"duplicate node":    craft(t, hdr, settings("c", 1), node("a"), node("a")),
		"empty node id":     craft(t, hdr, settings("c", 1), node("")),
		"two settings":      craft(t, hdr, settings("c", 1), settings("c", 1)),
		"garbage in record": craft(t, hdr, settings("c", 1), append(node("a"), 0)),
	}
	for name, b := range cases {
		f := New("meta")
		err := restore(f, b)
		if !errors.Is(err, ErrBadSnapshot) && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v", name, err)
		}
		if f.ClusterID() != "" || f.AppliedIndex() != 0 {
			t.Errorf("%s: state changed", name)
		}
	}
	if err := restore(New("meta"), craft(t, hdr, settings("c", 1), node("a"), node("b"))); err != nil {
		t.Fatalf("valid checkpoint: %v", err)
	}
}
