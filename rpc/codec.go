package rpc

import (
	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Arguments and results are msgpack: hashicorp/raft already depends on
// go-msgpack, it is reflection-driven (no generated code to keep in step
// with the types), it honours the json tags the types already carry, and it
// writes []byte values raw, where JSON would base64 them.
var msgpack = &codec.MsgpackHandle{}

// BinaryMarshaler is implemented by arguments and results on the hot path
// (a key's put, get and delete) that encode themselves and so skip
// msgpack's reflection. Their encoding must start with FastMarker, a byte
// msgpack never writes, so that Unmarshal tells the two apart and still
// reads msgpack from a node that sends it.
type BinaryMarshaler interface{ MarshalRPC() []byte }

// BinaryUnmarshaler decodes what a BinaryMarshaler wrote.
type BinaryUnmarshaler interface{ UnmarshalRPC([]byte) error }

// FastMarker opens every self-encoded value (0xc1 is "never used" in the
// msgpack format).
const FastMarker = 0xc1

// Marshal encodes v for a request's arguments or a reply's result.
func Marshal(v any) ([]byte, error) {
	if m, ok := v.(BinaryMarshaler); ok {
		return m.MarshalRPC(), nil
	}
	var b []byte
	err := codec.NewEncoderBytes(&b, msgpack).Encode(v)
	return b, err
}

// Unmarshal decodes b, produced by Marshal, into v.
func Unmarshal(b []byte, v any) error {
	if u, ok := v.(BinaryUnmarshaler); ok && len(b) > 0 && b[0] == FastMarker {
		return u.UnmarshalRPC(b)
	}
	return codec.NewDecoderBytes(b, msgpack).Decode(v)
}
