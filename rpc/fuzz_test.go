package rpc

import (
	"bytes"
	"reflect"
	"testing"
)

// normalize treats an empty and a missing byte string alike.
func normalize(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// FuzzDecodeFrame feeds arbitrary bytes to the frame readers: they return an
// error or a value that survives encoding and decoding again unchanged, and
// never panic. (Not byte for byte: a varint may arrive in a longer form than
// the encoder writes.)
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
			again, err := decodeRequest(encodeRequest(req)[4:])
			if err != nil || !reflect.DeepEqual(normalize(again.Args), normalize(req.Args)) ||
				again.Group != req.Group || again.Op != req.Op || again.Caller != req.Caller || again.DeadlineMillis != req.DeadlineMillis {
				t.Fatalf("request %+v comes back as %+v, %v", req, again, err)
			}
		}
		if resp, err := decodeResponse(body); err == nil {
			again, err := decodeResponse(encodeResponse(resp)[4:])
			if err != nil || !reflect.DeepEqual(normalize(again.Result), normalize(resp.Result)) ||
				again.Node != resp.Node || again.Code != resp.Code || again.Message != resp.Message {
				t.Fatalf("response %+v comes back as %+v, %v", resp, again, err)
			}
		}
	})
}
