package rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// blockStarted hears from the "block" handler once it runs.
var blockStarted = make(chan struct{}, 1)

// echoServer answers "echo" with its arguments, "fail" with an error and
// "block" by waiting for its context, reporting why it ended on ended.
func echoServer(t testing.TB, cfg ServerConfig, ended chan<- error) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NodeID = "n1"
	cfg.Code = func(err error) string { return "test_code" }
	cfg.Handler = func(ctx context.Context, req Request) ([]byte, error) {
		switch req.Op {
		case "echo":
			return append([]byte(req.Group+"/"), req.Args...), nil
		case "fail":
			return nil, errors.New("it failed")
		case "deadline":
			dl, ok := ctx.Deadline()
			if !ok {
				return []byte("none"), nil
			}
			return []byte(fmt.Sprint(time.Until(dl) > 0 && time.Until(dl) <= time.Minute)), nil
		case "slow":
			time.Sleep(300 * time.Millisecond) // longer than the idle timeout of the test below
			return []byte("done"), nil
		case "block":
			blockStarted <- struct{}{}
			<-ctx.Done()
			ended <- ctx.Err()
			return nil, ctx.Err()
		}
		return nil, errors.New("unknown op")
	}
	s := Serve(ln, cfg)
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

func tcpClient(t testing.TB) *Client {
	c := NewClient(ClientConfig{Dial: func(addr string, timeout time.Duration) (net.Conn, error) {
		return net.DialTimeout("tcp", addr, timeout)
	}})
	t.Cleanup(c.Close)
	return c
}

func TestCallReturnsTheResultAndWhoAnswered(t *testing.T) {
	_, addr := echoServer(t, ServerConfig{}, nil)
	c := tcpClient(t)
	for i := 0; i < 3; i++ { // the second and third reuse the connection
		resp, err := c.Call(context.Background(), addr, Request{Group: "shard-1", Op: "echo", Args: []byte{0, 1, 2, 0xff}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Node != "n1" || string(resp.Result) != "shard-1/\x00\x01\x02\xff" {
			t.Fatalf("reply %+v", resp)
		}
	}
}

func TestHandlerErrorsArriveWithTheirCode(t *testing.T) {
	_, addr := echoServer(t, ServerConfig{}, nil)
	_, err := tcpClient(t).Call(context.Background(), addr, Request{Op: "fail"})
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != "test_code" || re.Message != "it failed" || re.Node != "n1" {
		t.Fatalf("error %v, want a RemoteError with code test_code", err)
	}
}

func TestTheCallersDeadlineTravelsWithTheRequest(t *testing.T) {
	_, addr := echoServer(t, ServerConfig{}, nil)
	c := tcpClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Call(ctx, addr, Request{Op: "deadline"})
	if err != nil || string(resp.Result) != "true" {
		t.Fatalf("with a deadline: %q %v", resp.Result, err)
	}
	resp, err = c.Call(context.Background(), addr, Request{Op: "deadline"})
	if err != nil || string(resp.Result) != "none" {
		t.Fatalf("without a deadline: %q %v", resp.Result, err)
	}
}

func TestACallerThatGivesUpCancelsTheCall(t *testing.T) {
	ended := make(chan error, 1)
	_, addr := echoServer(t, ServerConfig{}, ended)
	c := tcpClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-blockStarted; cancel() }() // hang up once the call is running
	_, err := c.Call(ctx, addr, Request{Op: "block"})
	if !errors.Is(err, ErrBroken) {
		t.Fatalf("cancelled call: %v, want ErrBroken", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler kept running after its caller hung up")
	}
}

func TestAnUnreachablePeerIsNotSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = tcpClient(t).Call(context.Background(), addr, Request{Op: "echo"})
	if !errors.Is(err, ErrNotSent) {
		t.Fatalf("call to a closed port: %v, want ErrNotSent", err)
	}
}

// A pooled connection to a peer that restarted is known dead before use,
// so the next call goes out on a new connection instead of failing with
// an unknown outcome.
func TestAPeerRestartDoesNotBreakTheNextCall(t *testing.T) {
	s, addr := echoServer(t, ServerConfig{}, nil)
	c := tcpClient(t)
	if _, err := c.Call(context.Background(), addr, Request{Op: "echo"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The pooled connection's reader sees the close (a real restart takes
	// far longer than this).
	c.mu.Lock()
	pooled := c.mu.idle[addr][0].conn
	c.mu.Unlock()
	select {
	case <-pooled.dead:
	case <-time.After(10 * time.Second):
		t.Fatal("the pooled connection never saw the server close it")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not listen on %s again: %v", addr, err)
	}
	s2 := Serve(ln, ServerConfig{NodeID: "n1b", Code: func(error) string { return "x" },
		Handler: func(ctx context.Context, req Request) ([]byte, error) { return []byte("ok"), nil }})
	defer s2.Close()
	resp, err := c.Call(context.Background(), addr, Request{Op: "echo"})
	if err != nil || resp.Node != "n1b" {
		t.Fatalf("call after the peer restarted: %+v %v", resp, err)
	}
}

func TestBadFramesCloseTheConnectionAndTheServerGoesOn(t *testing.T) {
	_, addr := echoServer(t, ServerConfig{FrameTimeout: 200 * time.Millisecond}, nil)
	cases := map[string][]byte{
		"oversized length": binary.BigEndian.AppendUint32(nil, MaxRequestBytes+1),
		"zero length":      binary.BigEndian.AppendUint32(nil, 0),
		"wrong kind":       finishFrame(beginFrame(kindResponse, 0)),
		"garbage fields":   append(binary.BigEndian.AppendUint32(nil, 3), kindRequest, 0xff, 0xff),
		"stalls mid-frame": binary.BigEndian.AppendUint32(nil, 100),
	}
	for name, frame := range cases {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadAll(conn); err != nil {
				t.Fatalf("want the server to close the connection, got %v", err)
			}
		})
	}
	if _, err := tcpClient(t).Call(context.Background(), addr, Request{Op: "echo"}); err != nil {
		t.Fatalf("a well-behaved caller after the bad ones: %v", err)
	}
}

func TestAnIdleConnectionIsClosedByTheServer(t *testing.T) {
	_, addr := echoServer(t, ServerConfig{IdleTimeout: 100 * time.Millisecond}, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("want the idle connection closed, got %v", err)
	}
}

// The idle timeout is for connections that ask nothing: a call that runs
// longer is answered.
func TestACallLongerThanTheIdleTimeoutIsAnswered(t *testing.T) {
	_, addr := echoServer(t, ServerConfig{IdleTimeout: 100 * time.Millisecond}, nil)
	c := tcpClient(t)
	for range 2 {
		resp, err := c.Call(context.Background(), addr, Request{Op: "slow"})
		if err != nil || string(resp.Result) != "done" {
			t.Fatalf("slow call: %q %v", resp.Result, err)
		}
	}
}

func TestFramesRoundTrip(t *testing.T) {
	req := Request{Group: "meta", Op: "register", DeadlineMillis: 1234, Caller: "tok1", Args: []byte("args")}
	got, err := decodeRequest(encodeRequest(req)[4:])
	if err != nil || got.Group != req.Group || got.Op != req.Op || got.DeadlineMillis != 1234 || got.Caller != "tok1" || string(got.Args) != "args" {
		t.Fatalf("request %+v %v", got, err)
	}
	resp := Response{Node: "n2", Code: "not_leader", Message: "no", Result: nil}
	gotResp, err := decodeResponse(encodeResponse(resp)[4:])
	if err != nil || gotResp.Node != "n2" || gotResp.Code != "not_leader" || gotResp.Message != "no" || len(gotResp.Result) != 0 {
		t.Fatalf("response %+v %v", gotResp, err)
	}
}
