package cluster

import (
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// FuzzHello: the raft hello and its answer are read from whoever connects
// to the raft port; a bad one is an error, never a panic, and a hello that
// reads back is the one that was written.
func FuzzHello(f *testing.F) {
	good := hello{Cluster: "5f0c1d", Group: "shard-1", From: "node3", FromInc: "114ca027", To: "node2", ToInc: "0b67202e"}
	f.Add(good.encode()[1:], []byte{verdictOK})
	f.Add(hello{Group: "meta"}.encode()[1:], append([]byte{verdictRefused, 0, 3}, "why"...))
	f.Add([]byte("KVH\x02"), []byte{7})
	f.Fuzz(func(t *testing.T, h, verdict []byte) {
		if got, err := readHello(bytes.NewReader(h)); err == nil {
			if again, err := readHello(bytes.NewReader(got.encode()[1:])); err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("hello %+v reads back as %+v, %v", got, again, err)
			}
		}
		_, _ = readVerdict(bytes.NewReader(verdict))
	})
}

func TestAHelloAndItsAnswerRoundTrip(t *testing.T) {
	want := hello{Cluster: "c", Group: "shard-2", From: "a", FromInc: "i1", To: "b", ToInc: "i2"}
	got, err := readHello(bytes.NewReader(want.encode()[1:]))
	if err != nil || got != want {
		t.Fatalf("hello read back as %+v, %v", got, err)
	}
	var buf bytes.Buffer
	if err := writeVerdict(&buf, "not you"); err != nil {
		t.Fatal(err)
	}
	if why, err := readVerdict(&buf); err != nil || why != "not you" {
		t.Fatalf("refusal read back as %q, %v", why, err)
	}
	buf.Reset()
	_ = writeVerdict(&buf, "")
	if why, err := readVerdict(&buf); err != nil || why != "" {
		t.Fatalf("acceptance read back as %q, %v", why, err)
	}
}

// stubLayer hands out the connections put in conns.
type stubLayer struct{ conns chan net.Conn }

func (s *stubLayer) Accept() (net.Conn, error) { return <-s.conns, nil }
func (s *stubLayer) Close() error              { return nil }
func (s *stubLayer) Addr() net.Addr            { return &net.TCPAddr{} }
func (s *stubLayer) Dial(raft.ServerAddress, time.Duration) (net.Conn, error) {
	return nil, errors.New("stub layer does not dial")
}

// TestClosingARaftLayerWaitsForWhatItsConnectionsRead: raft answers
// heartbeats in the goroutine that read them, outside its own shutdown, so
// the layer's Close (which comes before the log store closes) must not
// return while such a goroutine is still handling what it read; once it
// reads again, the closed connection ends it and Close returns.
func TestClosingARaftLayerWaitsForWhatItsConnectionsRead(t *testing.T) {
	n := &Node{cfg: Config{NodeID: "b"}, logger: hclog.NewNullLogger(), clusterID: "c", incarnation: "i"}
	inner := &stubLayer{conns: make(chan net.Conn, 1)}
	l := &peerLayer{StreamLayer: inner, n: n, group: "shard-1"}
	client, server := net.Pipe()
	defer client.Close()
	inner.conns <- server
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = client.Write(hello{Cluster: "c", Group: "shard-1", From: "a", To: "b", ToInc: "i"}.encode())
		_, _ = readVerdict(client)
		_, _ = client.Write([]byte("rpc"))
	}()
	buf := make([]byte, 3)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "rpc" {
		t.Fatalf("read after the hello: %q, %v", buf, err)
	}
	closed := make(chan struct{})
	go func() {
		_ = l.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while the connection's handler was still at work")
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := conn.Read(buf); err == nil {
		t.Fatal("a read on a connection of a closed layer succeeded")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return once the handler was back to reading")
	}
}
