package rpc

import (
	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Arguments and results are msgpack: hashicorp/raft already depends on
// go-msgpack, it is reflection-driven (no generated code to keep in step
// with the types), it honours the json tags the types already carry, and it
// writes []byte values raw, where JSON would base64 them.
var msgpack = &codec.MsgpackHandle{}

// Marshal encodes v for a request's arguments or a reply's result.
func Marshal(v any) ([]byte, error) {
	var b []byte
	err := codec.NewEncoderBytes(&b, msgpack).Encode(v)
	return b, err
}

// Unmarshal decodes b, produced by Marshal, into v.
func Unmarshal(b []byte, v any) error {
	return codec.NewDecoderBytes(b, msgpack).Decode(v)
}
