package rpc

import (
	"bytes"
	"testing"
)

// FuzzDecodeFrame feeds arbitrary bytes to the frame readers: they return an
// error or a value that encodes back to the same body, and never panic.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(encodeRequest(Request{Group: "shard-1", Op: "put", DeadlineMillis: 5000, Args: []byte{1, 2, 3}}))
	f.Add(encodeResponse(Response{Node: "n1", Code: "not_leader", Message: "ask n2"}))
	f.Add(encodeResponse(Response{Node: "n1", Result: bytes.Repeat([]byte{0xff}, 40)}))
	f.Add([]byte{0, 0, 0, 1, 'Q'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := readFrame(bytes.NewReader(data), MaxRequestBytes)
		if err != nil {
			return
		}
		if req, err := decodeRequest(body); err == nil {
			if again := encodeRequest(req)[4:]; !bytes.Equal(again, body) {
				t.Fatalf("request %+v re-encodes differently", req)
			}
		}
		if resp, err := decodeResponse(body); err == nil {
			if again := encodeResponse(resp)[4:]; !bytes.Equal(again, body) {
				t.Fatalf("response %+v re-encodes differently", resp)
			}
		}
	})
}
