package rpc

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// BenchmarkOneCallAtATime is the round trip of one caller's calls, one at
// a time, with 100-byte arguments: what a forwarded write's hop costs
// when nothing else is in flight. "tcp" is the floor: the same bytes
// echoed over a bare loopback connection, a read and a write each way.
func BenchmarkOneCallAtATime(b *testing.B) {
	args := make([]byte, 100)
	b.Run("rpc", func(b *testing.B) {
		_, addr := echoServer(b, ServerConfig{}, nil)
		c := tcpClient(b)
		req := Request{Group: "shard-1", Op: "echo", Args: args}
		if _, err := c.Call(context.Background(), addr, req); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := c.Call(context.Background(), addr, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		echoed := make(chan struct{})
		defer func() { <-echoed }() // after the client's conn closes, below
		go func() {
			defer close(echoed)
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			buf := make([]byte, 4+len(args))
			for {
				if _, err := io.ReadFull(conn, buf); err != nil {
					return
				}
				if _, err := conn.Write(buf); err != nil {
					return
				}
			}
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			ln.Close() // ends the echo goroutine's Accept
			b.Fatal(err)
		}
		defer conn.Close()
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(args)))
		frame = append(frame, args...)
		reply := make([]byte, len(frame))
		b.ResetTimer()
		for range b.N {
			if _, err := conn.Write(frame); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(conn, reply); err != nil {
				b.Fatal(err)
			}
		}
	})
}
