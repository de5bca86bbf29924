package cluster

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/rpc"
)

func TestHotPathArgumentsAndResultsRoundTrip(t *testing.T) {
	cases := []struct {
		in, out any
	}{
		{putArgs{Key: "k", Value: []byte("value"), Cond: fsm.Condition{Kind: fsm.CondRevision, Revision: 77}}, new(putArgs)},
		{putArgs{Key: "empty"}, new(putArgs)},
		{keyArgs{Key: "k", Cond: fsm.Condition{Kind: fsm.CondAbsent}}, new(keyArgs)},
		{KVResult{KV: fsm.KV{Key: "k", Value: []byte("v"), CreateRevision: 3, ModRevision: 9, Version: 4}, Found: true, Shard: "shard-2"}, new(KVResult)},
		{KVResult{Deleted: true, Shard: "shard-1"}, new(KVResult)},
		{KVResult{KV: fsm.KV{Key: "k"}, Found: true, Shard: "shard-3", Index: 1 << 40, Term: 7}, new(KVResult)},
		{KVResult{KV: fsm.KV{Key: "lock", Value: []byte("me"), Lease: "shard-1.9f"}, Found: true, Shard: "shard-1", Index: 5, Term: 2}, new(KVResult)},
	}
	for _, c := range cases {
		raw, err := rpc.Marshal(c.in)
		if err != nil || raw[0] != rpc.FastMarker {
			t.Fatalf("%T encodes as %x, %v: want the self-encoded form", c.in, raw, err)
		}
		if err := rpc.Unmarshal(raw, c.out); err != nil {
			t.Fatalf("%T: %v", c.in, err)
		}
		if got := reflect.ValueOf(c.out).Elem().Interface(); !reflect.DeepEqual(got, c.in) {
			t.Fatalf("%+v comes back as %+v", c.in, got)
		}
	}
}

// A node of an earlier build sends msgpack; it still decodes.
func TestMsgpackFromAnOlderNodeStillDecodes(t *testing.T) {
	in := putArgs{Key: "k", Value: []byte("v"), Cond: fsm.Condition{Kind: fsm.CondRevision, Revision: 5}}
	var raw []byte
	if err := codec.NewEncoderBytes(&raw, &codec.MsgpackHandle{}).Encode(in); err != nil {
		t.Fatal(err)
	}
	var out putArgs
	if err := rpc.Unmarshal(raw, &out); err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("msgpack put arguments decode as %+v, %v", out, err)
	}
}

func TestMalformedHotPathArgumentsAreBadRequests(t *testing.T) {
	good := putArgs{Key: "k", Value: []byte("v")}.MarshalRPC()
	for _, b := range [][]byte{{rpc.FastMarker}, {rpc.FastMarker, 9}, good[:len(good)-1], append(good, 0)} {
		var a putArgs
		if err := a.UnmarshalRPC(b); !errors.Is(err, ErrBadRequest) {
			t.Errorf("put arguments %x: %v, want ErrBadRequest", b, err)
		}
	}
}

func FuzzHotPathDecoders(f *testing.F) {
	f.Add(putArgs{Key: "k", Value: []byte("v")}.MarshalRPC())
	f.Add(keyArgs{Key: "k"}.MarshalRPC())
	f.Add(KVResult{KV: fsm.KV{Key: "k"}, Found: true}.MarshalRPC())
	f.Fuzz(func(t *testing.T, b []byte) {
		var p putArgs
		if p.UnmarshalRPC(b) == nil && !reflect.DeepEqual(decodePut(t, p.MarshalRPC()), p) {
			t.Fatalf("put arguments %+v do not round-trip", p)
		}
		var k keyArgs
		_ = k.UnmarshalRPC(b)
		var r KVResult
		_ = r.UnmarshalRPC(b)
	})
}

func decodePut(t *testing.T, b []byte) putArgs {
	var p putArgs
	if err := p.UnmarshalRPC(b); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPrepareArgumentsKeepTheirWireFormAcrossVersions: the prepare's time
// to live is a new field. A prepare from a node that does not send it
// decodes with none (the receiver then holds it to its absolute deadline),
// and one that sends it decodes on a node that does not know the field.
func TestPrepareArgumentsKeepTheirWireFormAcrossVersions(t *testing.T) {
	type olderPrepareArgs struct {
		Cmd fsm.TxnCmd `json:"cmd"`
	}
	cmd := fsm.TxnCmd{ID: "shard-1.ab", Primary: "shard-1", Participants: []string{"shard-1", "shard-2"}, Deadline: 12345,
		Body: fsm.Txn{Success: []fsm.Op{{Kind: fsm.OpPut, Key: "k", Value: []byte("v")}}}}
	raw, err := rpc.Marshal(olderPrepareArgs{cmd})
	if err != nil {
		t.Fatal(err)
	}
	var now prepareArgs
	if err := rpc.Unmarshal(raw, &now); err != nil || now.TTL != 0 || !reflect.DeepEqual(now.Cmd, cmd) {
		t.Fatalf("older prepare decoded as %+v, %v", now, err)
	}
	raw, err = rpc.Marshal(prepareArgs{Cmd: cmd, TTL: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var older olderPrepareArgs
	if err := rpc.Unmarshal(raw, &older); err != nil || !reflect.DeepEqual(older.Cmd, cmd) {
		t.Fatalf("current prepare decoded by an older node as %+v, %v", older, err)
	}
	if err := rpc.Unmarshal(raw, &now); err != nil || now.TTL != 1500*time.Millisecond {
		t.Fatalf("current prepare round trip: %+v, %v", now, err)
	}
}
