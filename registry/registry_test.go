package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

type harness struct {
	t   testing.TB
	f   *FSM
	idx uint64
}

func newHarness(t testing.TB) *harness { return &harness{t: t, f: New("meta")} }

func (h *harness) apply(data []byte) *Result {
	h.t.Helper()
	h.idx++
	out := h.f.Apply(&raft.Log{Index: h.idx, Term: 2, Type: raft.LogCommand, Data: data})
	r, ok := out.(*Result)
	if !ok {
		h.t.Fatalf("Apply returned %T, want *Result", out)
	}
	return r
}

func TestApplyRules(t *testing.T) {
	n1 := Node{ID: "n1", HTTPAddr: "127.0.0.1:8001", RaftAddr: "127.0.0.1:9001"}
	n1moved := Node{ID: "n1", HTTPAddr: "127.0.0.1:8101", RaftAddr: "127.0.0.1:9101"}
	n2 := Node{ID: "n2", HTTPAddr: "127.0.0.1:8002", RaftAddr: "127.0.0.1:9002"}
	steps := []struct {
		name    string
		cmd     []byte
		wantErr error
		changed bool
	}{
		{"init invalid: zero shards", EncodeInit("c1", 0), ErrInvalid, false},
		{"init invalid: empty id", EncodeInit("", 3), ErrInvalid, false},
		{"init invalid: negative", EncodeInit("c1", -1), ErrInvalid, false},
		{"init invalid: too many", EncodeInit("c1", MaxShards+1), ErrInvalid, false},
		{"init", EncodeInit("c1", 3), nil, true},
		{"init repeat", EncodeInit("c1", 3), nil, false},
		{"init other shards", EncodeInit("c1", 4), ErrAlreadyInitialized, false},
		{"init other id", EncodeInit("c2", 3), ErrAlreadyInitialized, false},
		{"add n2", EncodeUpsertNode(n2), nil, true},
		{"add n1", EncodeUpsertNode(n1), nil, true},
		{"re-add n1", EncodeUpsertNode(n1), nil, false},
		{"move n1", EncodeUpsertNode(n1moved), nil, true},
		{"empty id", EncodeUpsertNode(Node{HTTPAddr: "x"}), ErrInvalid, false},
		{"remove unknown", EncodeRemoveNode("n9"), ErrUnknownNode, false},
		{"remove n2", EncodeRemoveNode("n2"), nil, true},
		{"remove n2 again", EncodeRemoveNode("n2"), ErrUnknownNode, false},
		{"noop", EncodeNoop(), nil, false},
	}
	h := newHarness(t)
	for _, s := range steps {
		r := h.apply(s.cmd)
		if !errors.Is(r.Err, s.wantErr) || (s.wantErr == nil && r.Err != nil) || r.Changed != s.changed {
			t.Fatalf("%s: got Err=%v Changed=%v, want %v %v", s.name, r.Err, r.Changed, s.wantErr, s.changed)
		}
	}
	if h.f.ClusterID() != "c1" || h.f.Shards() != 3 {
		t.Fatalf("settings %q %d", h.f.ClusterID(), h.f.Shards())
	}
	if got := h.f.Nodes(); !reflect.DeepEqual(got, []Node{n1moved}) {
		t.Fatalf("Nodes() = %+v", got)
	}
	if n, ok := h.f.Node("n1"); !ok || n != n1moved {
		t.Fatalf("Node(n1) = %+v %v", n, ok)
	}
	if _, ok := h.f.Node("n2"); ok {
		t.Fatal("removed node still present")
	}
	if h.f.AppliedIndex() != uint64(len(steps)) {
		t.Fatalf("AppliedIndex %d", h.f.AppliedIndex())
	}
}

func TestUninitialized(t *testing.T) {
	f := New("meta")
	if f.ClusterID() != "" || f.Shards() != 0 || len(f.Nodes()) != 0 {
		t.Fatal("new registry is not empty")
	}
}

func TestNodesReturnsCopies(t *testing.T) {
	h := newHarness(t)
	h.apply(EncodeUpsertNode(Node{ID: "b"}))
	h.apply(EncodeUpsertNode(Node{ID: "a"}))
	ns := h.f.Nodes()
	if ns[0].ID != "a" || ns[1].ID != "b" {
		t.Fatalf("not sorted: %+v", ns)
	}
	ns[0].HTTPAddr = "changed"
	if n, _ := h.f.Node("a"); n.HTTPAddr != "" {
		t.Fatal("Nodes() exposed internal state")
	}
}

func TestConfigEntriesAdvanceIndex(t *testing.T) {
	f := New("meta")
	out := f.ApplyBatch([]*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration},
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: EncodeInit("c", 1)},
	})
	if len(out) != 2 || out[0] != nil || out[1].(*Result).Err != nil {
		t.Fatalf("results %+v", out)
	}
	if f.AppliedIndex() != 2 {
		t.Fatalf("AppliedIndex %d", f.AppliedIndex())
	}
}

func TestWaitApplied(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.f.WaitApplied(ctx, 2) }()
	h.apply(EncodeInit("c", 1))
	h.apply(EncodeUpsertNode(Node{ID: "n1"}))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if err := h.f.WaitApplied(short, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := EncodeUpsertNode(Node{ID: "n1", HTTPAddr: "h", RaftAddr: "r"})
	cases := []struct {
		b    []byte
		want error
	}{
		{nil, ErrMalformed},
		{[]byte{CommandVersion + 1, byte(CommandInit)}, ErrUnknownVersion},
		{[]byte{CommandVersion, 0}, ErrMalformed},
		{[]byte{0, byte(CommandNoop)}, ErrMalformed},
		{[]byte{CommandVersion, 99}, ErrUnknownCommand},
		{[]byte{CommandVersion, 5}, ErrShardCommand},
		{[]byte{CommandVersion, 16}, ErrShardCommand}, // fsm.CommandLeaseGrant
		{good[:len(good)-1], ErrMalformed},
		{append(bytes.Clone(good), 0), ErrMalformed},
		{[]byte{CommandVersion, byte(CommandRemoveNode), 0xff, 0xff, 0xff, 0xff, 0x0f}, ErrMalformed},
	}
	for i, tc := range cases {
		if _, err := Decode(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("case %d: got %v, want %v", i, err, tc.want)
		}
	}
}

func encodeCommand(c Command) []byte {
	switch c.Type {
	case CommandInit:
		return EncodeInit(c.ClusterID, int(c.Shards))
	case CommandUpsertNode, CommandRegisterNode:
		return EncodeUpsertNode(c.Node)
	case CommandRemoveNode:
		return EncodeRemoveNode(c.Node.ID)
	case CommandPutRole:
		return EncodePutRole(c.Role)
	case CommandDeleteRole:
		return EncodeDeleteRole(c.Role.Name)
	case CommandPutToken:
		return EncodePutToken(c.Token)
	case CommandDeleteToken:
		return EncodeDeleteToken(c.Token.ID)
	}
	return EncodeNoop()
}

// FuzzDecode: Decode never panics, and what it accepts re-encodes to the
// same command.
func FuzzDecode(f *testing.F) {
	f.Add(EncodeInit("cluster", 3))
	f.Add(EncodeUpsertNode(Node{ID: "n1", HTTPAddr: "a:1", RaftAddr: "a:2"}))
	f.Add(EncodeUpsertNode(Node{ID: "n1", HTTPAddr: "a:1", RaftAddr: "a:2", Incarnation: "0a1b"}))
	f.Add(EncodeRemoveNode("n1"))
	f.Add(EncodeNoop())
	f.Add(EncodePutRole(Role{Name: "app", Permissions: []Permission{{Prefix: "app/", Access: AccessReadWrite}}}))
	f.Add(EncodePutToken(Token{ID: "t1", Hash: strings.Repeat("ab", 32), Roles: []string{"app"}, ExpiresAt: 5}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		c2, err := Decode(encodeCommand(c))
		if err != nil || !reflect.DeepEqual(c2, c) {
			t.Fatalf("re-decode of %+v: %+v, %v", c, c2, err)
		}
	})
}

func randomOps(rng *rand.Rand, n int) [][]byte {
	ops := [][]byte{EncodeInit("c", 5)}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("n%d", rng.IntN(12))
		switch rng.IntN(4) {
		case 0:
			ops = append(ops, EncodeRemoveNode(id))
		case 1:
			ops = append(ops, EncodeInit("c", 1+rng.IntN(6)))
		default:
			inc := []string{"", "i1", "i2"}[rng.IntN(3)]
			ops = append(ops, EncodeUpsertNode(Node{ID: id, HTTPAddr: fmt.Sprint(rng.IntN(3)), RaftAddr: "r", Incarnation: inc}))
		}
	}
	return ops
}

func TestDeterminism(t *testing.T) {
	ops := randomOps(rand.New(rand.NewPCG(3, 4)), 500)
	a, b := newHarness(t), newHarness(t)
	for _, op := range ops {
		a.apply(op)
	}
	for start := 0; start < len(ops); start += 17 {
		var batch []*raft.Log
		for i := start; i < min(len(ops), start+17); i++ {
			batch = append(batch, &raft.Log{Index: uint64(i + 1), Term: 2, Type: raft.LogCommand, Data: ops[i]})
		}
		b.f.ApplyBatch(batch)
	}
	if !bytes.Equal(persist(t, a.f), persist(t, b.f)) {
		t.Fatal("same entries produced different checkpoints")
	}
}

// TestAnUpsertWithoutIncarnationKeepsTheOneRecorded: a node's incarnation
// changes only through an entry that names one; an older raftkv's upsert
// (or a join that names none) moves the addresses and keeps it. It
// survives a checkpoint.
func TestAnUpsertWithoutIncarnationKeepsTheOneRecorded(t *testing.T) {
	h := newHarness(t)
	h.apply(EncodeInit("c1", 1))
	n1 := Node{ID: "n1", HTTPAddr: "h:1", RaftAddr: "r:1", Incarnation: "i1"}
	if r := h.apply(EncodeUpsertNode(n1)); r.Err != nil || !r.Changed {
		t.Fatalf("register n1: %+v", r)
	}
	if r := h.apply(EncodeUpsertNode(Node{ID: "n1", HTTPAddr: "h:1", RaftAddr: "r:1"})); r.Err != nil || r.Changed {
		t.Fatalf("same addresses, no incarnation: %+v, want no change", r)
	}
	h.apply(EncodeUpsertNode(Node{ID: "n1", HTTPAddr: "h:2", RaftAddr: "r:1"}))
	if n, _ := h.f.Node("n1"); n.Incarnation != "i1" || n.HTTPAddr != "h:2" {
		t.Fatalf("after a move without incarnation: %+v", n)
	}
	h.apply(EncodeUpsertNode(Node{ID: "n1", HTTPAddr: "h:2", RaftAddr: "r:1", Incarnation: "i2"}))
	g := New("meta")
	if err := restore(g, persist(t, h.f)); err != nil {
		t.Fatal(err)
	}
	if n, _ := g.Node("n1"); n.Incarnation != "i2" {
		t.Fatalf("restored %+v, want incarnation i2", n)
	}
	if _, err := Decode([]byte{CommandVersion, byte(CommandRegisterNode), 1, 'a', 0, 0, 0}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("register-node with an empty incarnation: %v, want malformed", err)
	}
}
