package cluster

import (
	"encoding/binary"
	"fmt"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/rpc"
)

// The arguments and results of the operations every forwarded write or read
// makes encode themselves (rpc.BinaryMarshaler): msgpack's reflection was
// about 5 % of a node's CPU under load. Layout after rpc.FastMarker and a
// layout byte: uvarints, and uvarint-length-prefixed strings and bytes.
const rpcLayout = 1

func beginRPC(size int) []byte {
	b := make([]byte, 0, 2+size)
	return append(b, rpc.FastMarker, rpcLayout)
}

func rpcDecoder(b []byte, what string) (*wire.Decoder, error) {
	if len(b) < 2 || b[0] != rpc.FastMarker || b[1] != rpcLayout {
		return nil, fmt.Errorf("%w: %s: unknown encoding", ErrBadRequest, what)
	}
	return wire.NewDecoder(b[2:]), nil
}

func appendCond(b []byte, c fsm.Condition) []byte {
	b = append(b, byte(c.Kind))
	return binary.AppendUvarint(b, c.Revision)
}

func readCond(d *wire.Decoder) fsm.Condition {
	return fsm.Condition{Kind: fsm.CondKind(d.Byte()), Revision: d.Uvarint()}
}

func finishRPC(d *wire.Decoder, what string) error {
	if err := d.Finish(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadRequest, what, err)
	}
	return nil
}

// A keyed write's idempotency key and hash follow the condition
// (appendOnce). Without a key the arguments are as before, so a leader of
// an older build still reads them; with one, it refuses them (trailing
// bytes: bad request) instead of applying the write without its key.
func appendOnce(b []byte, o *onceArgs) []byte {
	if o == nil {
		return b
	}
	b = wire.AppendText(b, o.Key)
	return wire.AppendBytes(b, o.Hash)
}

func readOnce(d *wire.Decoder) *onceArgs {
	if d.Len() == 0 {
		return nil
	}
	return &onceArgs{Key: d.Text(), Hash: append([]byte(nil), d.Bytes()...)}
}

// MarshalRPC implements rpc.BinaryMarshaler.
func (a putArgs) MarshalRPC() []byte {
	b := beginRPC(len(a.Key) + len(a.Value) + 24)
	b = wire.AppendText(b, a.Key)
	b = wire.AppendBytes(b, a.Value)
	return appendOnce(appendCond(b, a.Cond), a.Once)
}

// UnmarshalRPC implements rpc.BinaryUnmarshaler.
func (a *putArgs) UnmarshalRPC(b []byte) error {
	d, err := rpcDecoder(b, "put arguments")
	if err != nil {
		return err
	}
	a.Key = d.Text()
	if v := d.Bytes(); len(v) > 0 {
		a.Value = v // aliases the request frame, which the call owns
	}
	a.Cond = readCond(d)
	a.Once = readOnce(d)
	return finishRPC(d, "put arguments")
}

// MarshalRPC implements rpc.BinaryMarshaler.
func (a keyArgs) MarshalRPC() []byte {
	b := beginRPC(len(a.Key) + 16)
	b = wire.AppendText(b, a.Key)
	return appendOnce(appendCond(b, a.Cond), a.Once)
}

// UnmarshalRPC implements rpc.BinaryUnmarshaler.
func (a *keyArgs) UnmarshalRPC(b []byte) error {
	d, err := rpcDecoder(b, "key arguments")
	if err != nil {
		return err
	}
	a.Key = d.Text()
	a.Cond = readCond(d)
	a.Once = readOnce(d)
	return finishRPC(d, "key arguments")
}

// MarshalRPC implements rpc.BinaryMarshaler.
func (r KVResult) MarshalRPC() []byte {
	b := beginRPC(len(r.KV.Key) + len(r.KV.Value) + len(r.Shard) + 40)
	b = wire.AppendText(b, r.KV.Key)
	b = wire.AppendBytes(b, r.KV.Value)
	b = binary.AppendUvarint(b, r.KV.CreateRevision)
	b = binary.AppendUvarint(b, r.KV.ModRevision)
	b = binary.AppendUvarint(b, r.KV.Version)
	var flags byte
	if r.Found {
		flags |= 1
	}
	if r.Deleted {
		flags |= 2
	}
	if r.Index != 0 || r.Term != 0 {
		flags |= kvResultHasIndex
	}
	if r.Replayed {
		flags |= kvResultReplayed
	}
	if r.KV.Lease != "" {
		flags |= kvResultHasLease
	}
	b = append(b, flags)
	b = wire.AppendText(b, r.Shard)
	if flags&kvResultHasIndex != 0 {
		b = binary.AppendUvarint(b, r.Index)
		b = binary.AppendUvarint(b, r.Term)
	}
	if flags&kvResultHasLease != 0 {
		b = wire.AppendText(b, r.KV.Lease)
	}
	return b
}

// kvResultHasIndex marks a key result that carries its raft index and
// term after the shard. Builds before it refuse the flag, so a forwarded
// key operation between such a build and this one fails (bad request)
// until both nodes run this one.
const kvResultHasIndex = 4

// kvResultReplayed marks the remembered first result of a keyed write.
// Only a keyed write gets one, and only a build that sends keys sends
// keyed writes, so no older build receives the flag.
const kvResultReplayed = 8

// kvResultHasLease marks a read of a key attached to a lease: its id
// follows the index and term. Only keys put with a lease, which only
// builds with leases write, carry it; an older build refuses the flag.
const kvResultHasLease = 16

// UnmarshalRPC implements rpc.BinaryUnmarshaler.
func (r *KVResult) UnmarshalRPC(b []byte) error {
	d, err := rpcDecoder(b, "key result")
	if err != nil {
		return err
	}
	r.KV.Key = d.Text()
	if v := d.Bytes(); len(v) > 0 {
		r.KV.Value = v
	}
	r.KV.CreateRevision = d.Uvarint()
	r.KV.ModRevision = d.Uvarint()
	r.KV.Version = d.Uvarint()
	flags := d.Byte()
	r.Found, r.Deleted, r.Replayed = flags&1 != 0, flags&2 != 0, flags&kvResultReplayed != 0
	r.Shard = d.Text()
	if flags&kvResultHasIndex != 0 {
		r.Index, r.Term = d.Uvarint(), d.Uvarint()
	}
	if flags&kvResultHasLease != 0 {
		r.KV.Lease = d.Text()
	}
	if flags > 31 {
		d.Fail("unknown flags")
	}
	return finishRPC(d, "key result")
}
