package raftlane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/wire"
)

// tcpLayer is a raft.StreamLayer on a loopback listener.
type tcpLayer struct{ net.Listener }

func (l tcpLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

func listen(t testing.TB) tcpLayer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return tcpLayer{ln}
}

// countFSM counts applied commands.
type countFSM struct {
	mu sync.Mutex
	n  int
}

func (f *countFSM) Apply(*raft.Log) any { f.mu.Lock(); f.n++; f.mu.Unlock(); return nil }
func (f *countFSM) count() int          { f.mu.Lock(); defer f.mu.Unlock(); return f.n }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, fmt.Errorf("no snapshots in this test")
}
func (f *countFSM) Restore(io.ReadCloser) error { return nil }

// testNode is one process's worth: a lane and several raft groups.
type testNode struct {
	id     string
	lane   *Lane
	trans  map[string]*Transport
	rafts  map[string]*raft.Raft
	fsms   map[string]*countFSM
	closed bool
}

func (n *testNode) close() {
	if n.closed {
		return
	}
	n.closed = true
	for _, r := range n.rafts {
		_ = r.Shutdown().Error()
	}
	for _, t := range n.trans {
		t.CloseStreams()
		_ = t.Close()
	}
	if n.lane != nil {
		_ = n.lane.Close()
	}
}

// startCluster starts nodes hosting the given groups, each group's
// transport on its own listener and the lane on another (withLane false:
// that node has none, as an older build).
func startCluster(t *testing.T, groups []string, withLane []bool) []*testNode {
	t.Helper()
	nodes := make([]*testNode, len(withLane))
	groupLayers := map[string][]tcpLayer{}
	for _, g := range groups {
		for range nodes {
			groupLayers[g] = append(groupLayers[g], listen(t))
		}
	}
	// One address per node for every group, as on a real raft port, is not
	// possible with a listener per group: each group's servers list that
	// group's addresses, and the lane keys peers by address too, so the
	// lane maps a group address to its node's lane address.
	for i := range nodes {
		n := &testNode{id: fmt.Sprintf("n%d", i+1), trans: map[string]*Transport{}, rafts: map[string]*raft.Raft{}, fsms: map[string]*countFSM{}}
		nodes[i] = n
	}
	laneAddr := map[raft.ServerAddress]raft.ServerAddress{}
	laneLayers := make([]tcpLayer, len(nodes))
	for i := range nodes {
		laneLayers[i] = listen(t)
		for _, g := range groups {
			laneAddr[raft.ServerAddress(groupLayers[g][i].Addr().String())] = raft.ServerAddress(laneLayers[i].Addr().String())
		}
	}
	for i, n := range nodes {
		layer := routedLayer{tcpLayer: laneLayers[i], route: laneAddr}
		if !withLane[i] {
			_ = laneLayers[i].Close() // dials to it are refused, as to a build without lanes
			layer.tcpLayer = listen(t)
		}
		n.lane = New(Config{Layer: layer, Timeout: 5 * time.Second, Logger: hclog.NewNullLogger()})
		for _, g := range groups {
			inner := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: groupLayers[g][i], MaxPool: 3, MaxRPCsInFlight: 1, Timeout: 5 * time.Second,
				Logger: hclog.NewNullLogger()})
			tr, err := n.lane.Wrap(g, inner)
			if err != nil {
				t.Fatal(err)
			}
			n.trans[g] = tr
			cfg := raft.DefaultConfig()
			cfg.LocalID = raft.ServerID(n.id)
			cfg.Logger = hclog.NewNullLogger()
			cfg.HeartbeatTimeout = 500 * time.Millisecond
			cfg.ElectionTimeout = 500 * time.Millisecond
			cfg.LeaderLeaseTimeout = 250 * time.Millisecond
			store := raft.NewInmemStore()
			fsm := &countFSM{}
			r, err := raft.NewRaft(cfg, fsm, store, store, raft.NewInmemSnapshotStore(), tr)
			if err != nil {
				t.Fatal(err)
			}
			n.rafts[g], n.fsms[g] = r, fsm
		}
	}
	for _, g := range groups {
		var servers []raft.Server
		for i, n := range nodes {
			servers = append(servers, raft.Server{ID: raft.ServerID(n.id), Address: raft.ServerAddress(groupLayers[g][i].Addr().String())})
		}
		if err := nodes[0].rafts[g].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.close()
		}
	})
	return nodes
}

// routedLayer dials the lane of the node whose group address it is given.
type routedLayer struct {
	tcpLayer
	route map[raft.ServerAddress]raft.ServerAddress
}

func (l routedLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if a, ok := l.route[addr]; ok {
		addr = a
	}
	return l.tcpLayer.Dial(addr, timeout)
}

func leaderOf(t *testing.T, nodes []*testNode, g string) *raft.Raft {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if !n.closed && n.rafts[g].State() == raft.Leader {
				return n.rafts[g]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no leader in %s", g)
	return nil
}

// applyMany applies count commands to every group at once, 16 at a time
// per group, and fails on any error.
func applyMany(t *testing.T, nodes []*testNode, groups []string, count int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(groups)*16)
	for _, g := range groups {
		r := leaderOf(t, nodes, g)
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < count/16; i++ {
					if err := r.Apply([]byte("x"), 10*time.Second).Error(); err != nil {
						errs <- fmt.Errorf("%s: %w", g, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// waitApplied waits until every running node has applied want commands
// (plus nothing else) in each group.
func waitApplied(t *testing.T, nodes []*testNode, groups []string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		short := ""
		for _, n := range nodes {
			for _, g := range groups {
				if got := n.fsms[g].count(); !n.closed && got != want {
					short = fmt.Sprintf("%s applied %d of %d in %s", n.id, got, want, g)
				}
			}
		}
		if short == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(short)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEveryGroupsAppendsTakeTheLane(t *testing.T) {
	groups := []string{"meta", "shard-1", "shard-2", "shard-3"}
	nodes := startCluster(t, groups, []bool{true, true, true})
	applyMany(t, nodes, groups, 1600)
	waitApplied(t, nodes, groups, 1600)
	var appends, frames, writes uint64
	for _, n := range nodes {
		s := n.lane.Stats()
		appends += s.Appends
		frames += s.Frames
		writes += s.Writes
	}
	if appends == 0 {
		t.Fatalf("no append took the lane: %+v", nodes[0].lane.Stats())
	}
	t.Logf("lane appends %d, frames %d in %d writes", appends, frames, writes)
}

func TestAppendsFallBackToTheGroupsTransportWhenAPeerHasNoLane(t *testing.T) {
	groups := []string{"shard-1", "shard-2"}
	nodes := startCluster(t, groups, []bool{true, true, false})
	applyMany(t, nodes, groups, 800)
	waitApplied(t, nodes, groups, 800)
	var fallbacks uint64
	for _, n := range nodes {
		fallbacks += n.lane.Stats().Fallbacks
	}
	if fallbacks == 0 {
		t.Fatal("no append to the node without a lane took the group's own transport")
	}
}

// cutLanes ends every lane connection of n, both directions.
func cutLanes(n *testNode) int {
	conns := n.lane.conns()
	for _, c := range conns {
		c.fail(errors.New("cut by the test"))
	}
	return len(conns)
}

func TestWritesGoOnWhenLaneConnectionsAreCut(t *testing.T) {
	groups := []string{"shard-1", "shard-2", "shard-3"}
	nodes := startCluster(t, groups, []bool{true, true, true})
	applyMany(t, nodes, groups, 160) // the lanes are up
	done := make(chan struct{})
	var cuts int
	go func() {
		defer close(done)
		for i := 0; i < 5; i++ {
			time.Sleep(20 * time.Millisecond)
			cuts += cutLanes(nodes[i%len(nodes)])
		}
	}()
	applyMany(t, nodes, groups, 1600)
	<-done
	if cuts == 0 {
		t.Fatal("the test cut no connection")
	}
	waitApplied(t, nodes, groups, 1760)
}

func TestALaneAnswersAnUnknownGroupAndDropsAMalformedFrame(t *testing.T) {
	nodes := startCluster(t, []string{"shard-1"}, []bool{true, true, true})
	addr := nodes[0].lane.cfg.Layer.(routedLayer).Addr().String()

	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 1, Term: 1, Data: []byte("x")}}}
	if _, err := c.Write(encodeRequest(7, "shard-9", req)); err != nil {
		t.Fatal(err)
	}
	kind, body, err := newFrameReader(c).next()
	if err != nil || kind != kindReply {
		t.Fatalf("reply: kind %q, %v", kind, err)
	}
	var resp raft.AppendEntriesResponse
	id, remote, err := decodeReply(body, &resp)
	if err != nil || id != 7 || remote == nil || !strings.Contains(remote.Error(), `"shard-9" is not hosted`) {
		t.Fatalf("reply to an unknown group: id %d, remote %v, err %v", id, remote, err)
	}

	if _, err := c.Write([]byte{0, 0, 0, 3, kindRequest, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection stayed open after a malformed frame")
	}
	// The node and its lane go on serving.
	applyMany(t, nodes, []string{"shard-1"}, 160)
	waitApplied(t, nodes, []string{"shard-1"}, 160)
}

func TestAConnWritesEveryFrameOnceAndInOrder(t *testing.T) {
	a, b := net.Pipe()
	var writes counter
	c := newConn(a, 5*time.Second, &writes)
	go c.writeLoop()
	defer c.fail(errors.New("test over"))
	const senders, each = 16, 2000
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				f := startFrame(kindReply, uint64(s), 8)
				f = binary.AppendUvarint(f, uint64(i))
				if !c.send(finishFrame(f)) {
					t.Error("send refused on a live connection")
					return
				}
			}
		}()
	}
	fr := newFrameReader(b)
	next := make([]uint64, senders)
	for n := 0; n < senders*each; n++ {
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, body, err := fr.next()
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		d := wire.NewDecoder(body)
		s, i := d.Uvarint(), d.Uvarint()
		if d.Finish() != nil || s >= senders || i != next[s] {
			t.Fatalf("frame %d: sender %d's #%d, want #%d", n, s, i, next[min(s, senders-1)])
		}
		next[s]++
	}
	wg.Wait()
}

func TestTheCodecRoundTripsAppendsAndReplies(t *testing.T) {
	at := time.Unix(0, 1_700_000_000_123_456_789)
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("n1"), Addr: []byte("127.0.0.1:7000")},
		Term:      9, PrevLogEntry: 41, PrevLogTerm: 8, LeaderCommitIndex: 40,
		Entries: []*raft.Log{
			{Index: 42, Term: 9, Type: raft.LogCommand, Data: []byte("put a"), Extensions: []byte{1, 2}, AppendedAt: at},
			{Index: 43, Term: 9, Type: raft.LogNoop},
			{Index: 44, Term: 9, Type: raft.LogConfiguration, Data: bytes.Repeat([]byte{7}, 300)},
		},
	}
	frame := encodeRequest(5, "shard-3", req)
	id, group, got, err := decodeRequest(frame[frameHeader+1:])
	if err != nil || id != 5 || group != "shard-3" {
		t.Fatalf("decode: id %d group %q err %v", id, group, err)
	}
	for _, e := range got.Entries {
		if !e.AppendedAt.IsZero() {
			e.AppendedAt = time.Unix(0, e.AppendedAt.UnixNano()) // drop the monotonic reading
		}
	}
	want := *req
	want.Entries = append([]*raft.Log(nil), req.Entries...)
	want.Entries[0] = &raft.Log{Index: 42, Term: 9, Type: raft.LogCommand, Data: []byte("put a"), Extensions: []byte{1, 2}, AppendedAt: time.Unix(0, at.UnixNano())}
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, &want)
	}

	resp := &raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("n2")}, Term: 9, LastLog: 44, Success: true, NoRetryBackoff: true}
	frame = encodeReply(5, resp)
	var back raft.AppendEntriesResponse
	if id, remote, err := decodeReply(frame[frameHeader+1:], &back); err != nil || remote != nil || id != 5 || !reflect.DeepEqual(&back, resp) {
		t.Fatalf("reply round trip: %+v, remote %v, err %v", back, remote, err)
	}
	frame = encodeErrorReply(6, "no leader")
	if id, remote, err := decodeReply(frame[frameHeader+1:], &back); err != nil || id != 6 || remote == nil || remote.Error() != "no leader" {
		t.Fatalf("error reply: id %d, remote %v, err %v", id, remote, err)
	}
}

// FuzzDecode: nothing a peer sends panics a node, and what decodes
// encodes back to the same request.
func FuzzDecode(f *testing.F) {
	f.Add(encodeRequest(1, "shard-1", &raft.AppendEntriesRequest{Term: 2, Entries: []*raft.Log{{Index: 3, Term: 2, Data: []byte("v")}}})[frameHeader+1:])
	f.Add(encodeReply(1, &raft.AppendEntriesResponse{Term: 2, Success: true})[frameHeader+1:])
	f.Add(encodeErrorReply(1, "x")[frameHeader+1:])
	f.Fuzz(func(t *testing.T, body []byte) {
		var resp raft.AppendEntriesResponse
		_, _, _ = decodeReply(body, &resp)
		id, group, req, err := decodeRequest(body)
		if err != nil {
			return
		}
		again := encodeRequest(id, group, req)
		if _, _, req2, err := decodeRequest(again[frameHeader+1:]); err != nil || !reflect.DeepEqual(req, req2) {
			t.Fatalf("re-encoding a decoded request changed it: %v", err)
		}
	})
}

// downLayer refuses to dial while down is set.
type downLayer struct {
	tcpLayer
	down  *atomic.Bool
	dials *atomic.Int32
}

func (l downLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	l.dials.Add(1)
	if l.down.Load() {
		return nil, errors.New("peer down (the test)")
	}
	return l.tcpLayer.Dial(addr, timeout)
}

// TestALaneToAPeerThatWasDownOpensOnceThePeerIsUp: appends to a peer that
// cannot be dialled take the group's transport; once the peer can be
// reached, the lane's redial opens it and appends take the lane.
func TestALaneToAPeerThatWasDownOpensOnceThePeerIsUp(t *testing.T) {
	remote := New(Config{Layer: listen(t)})
	defer remote.Close()
	target := raft.ServerAddress(remote.cfg.Layer.(tcpLayer).Addr().String())
	var down atomic.Bool
	var dials atomic.Int32
	down.Store(true)
	local := New(Config{Layer: downLayer{listen(t), &down, &dials}, Timeout: 5 * time.Second})
	defer local.Close()

	req := &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 1, Term: 1, Data: []byte("x")}}}
	send := func() (bool, error) {
		var resp raft.AppendEntriesResponse
		return local.appendEntries("shard-1", target, req, &resp)
	}
	deadline := time.Now().Add(10 * time.Second)
	for dials.Load() == 0 {
		if handled, _ := send(); handled {
			t.Fatal("an append took a lane to a peer that cannot be dialled")
		}
		if time.Now().After(deadline) {
			t.Fatal("the lane never dialled the peer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	down.Store(false)
	for {
		handled, err := send()
		if handled {
			// The remote hosts no group: its refusal proves the lane carried it.
			if err == nil || !strings.Contains(err.Error(), "not hosted") {
				t.Fatalf("append over the reopened lane: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lane after the peer came up (%d dials)", dials.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := dials.Load(); n < 2 {
		t.Fatalf("%d dials, want a failed one and a redial", n)
	}
}
