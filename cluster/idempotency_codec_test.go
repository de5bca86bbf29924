package cluster

import (
	"reflect"
	"testing"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/rpc"
)

// TestKeyedWriteArgumentsRoundTrip: a keyed put or delete carries its
// idempotency key and hash after the condition, and a replayed result its
// flag; without a key the arguments are byte for byte what they were.
func TestKeyedWriteArgumentsRoundTrip(t *testing.T) {
	once := &onceArgs{Key: "token\x00key-1", Hash: make([]byte, fsm.IdempotencyHashBytes)}
	for _, c := range []struct{ in, out any }{
		{putArgs{Key: "k", Value: []byte("v"), Cond: fsm.Condition{Kind: fsm.CondAbsent}, Once: once}, new(putArgs)},
		{keyArgs{Key: "k", Once: once}, new(keyArgs)},
		{KVResult{KV: fsm.KV{Key: "k", ModRevision: 3}, Shard: "shard-1", Index: 3, Term: 2, Replayed: true}, new(KVResult)},
	} {
		raw, err := rpc.Marshal(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if err := rpc.Unmarshal(raw, c.out); err != nil {
			t.Fatalf("%T: %v", c.in, err)
		}
		if got := reflect.ValueOf(c.out).Elem().Interface(); !reflect.DeepEqual(got, c.in) {
			t.Fatalf("%+v comes back as %+v", c.in, got)
		}
	}
	plain := putArgs{Key: "k", Value: []byte("v")}.MarshalRPC()
	keyed := putArgs{Key: "k", Value: []byte("v"), Once: once}.MarshalRPC()
	if string(keyed[:len(plain)]) != string(plain) || len(keyed) == len(plain) {
		t.Fatal("a keyed put must be the plain arguments followed by the key")
	}
}

// TestAnOlderLeaderRefusesAKeyedPut reads a keyed put the way a build from
// before idempotency keys does (key, value, condition, then nothing): it
// finds trailing bytes and refuses the call, rather than applying the
// write without its key.
func TestAnOlderLeaderRefusesAKeyedPut(t *testing.T) {
	raw := putArgs{Key: "k", Value: []byte("v"), Once: &onceArgs{Key: "x\x00y", Hash: make([]byte, 32)}}.MarshalRPC()
	d, err := rpcDecoder(raw, "put arguments")
	if err != nil {
		t.Fatal(err)
	}
	d.Text()
	d.Bytes()
	readCond(d)
	if err := finishRPC(d, "put arguments"); err == nil {
		t.Fatal("the older decoding accepted a keyed put")
	}
}
