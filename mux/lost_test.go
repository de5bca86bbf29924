package mux

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestAPeerClosingItsEndIsReportedWithTheGroup(t *testing.T) {
	m := newTestMux(t, defaultHeaderTimeout, nil)
	gone := make(chan string, 4)
	m.OnPeerGone(func(group string) { gone <- group })
	server := newTestLayer(t, m, "shard-7")
	client := newTestLayer(t, newTestMux(t, defaultHeaderTimeout, nil), "shard-7")

	out, err := client.Dial(raft.ServerAddress(m.Addr().String()), time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	in, err := server.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	defer in.Close()
	readErr := make(chan error, 1)
	go func() {
		_, err := in.Read(make([]byte, 1))
		readErr <- err
	}()
	_ = out.Close() // the peer goes away
	select {
	case g := <-gone:
		if g != "shard-7" {
			t.Fatalf("reported group %q, want shard-7", g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("peer's close was not reported")
	}
	<-readErr
}

func TestClosingOurOwnEndIsNotReported(t *testing.T) {
	m := newTestMux(t, defaultHeaderTimeout, nil)
	gone := make(chan string, 4)
	m.OnPeerGone(func(group string) { gone <- group })
	server := newTestLayer(t, m, "meta")
	client := newTestLayer(t, newTestMux(t, defaultHeaderTimeout, nil), "meta")
	out, err := client.Dial(raft.ServerAddress(m.Addr().String()), time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer out.Close()
	in, err := server.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = in.Read(make([]byte, 1))
	}()
	_ = in.Close()
	<-done
	select {
	case g := <-gone:
		t.Fatalf("our own close was reported as the peer's (group %s)", g)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestProbeRefusedTellsAClosedPortFromAListeningOne(t *testing.T) {
	m := newTestMux(t, defaultHeaderTimeout, nil)
	if ProbeRefused(m.Addr().String(), time.Second) {
		t.Fatal("a listening mux was probed as refusing")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if !ProbeRefused(closed, time.Second) {
		t.Fatal("a closed port was not probed as refusing")
	}
}
