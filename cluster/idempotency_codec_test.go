package cluster

import (
	"reflect"
	"testing"
	"time"

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

// TestANewLeaderForgetsNoInheritedKeyBeforeAWindow: a leader dates what it
// took over from its takeover. With its clock an hour ahead of the one
// that stamped the keys, it still forgets none of them until it has led
// for a window; a clock an hour behind only forgets late.
func TestANewLeaderForgetsNoInheritedKeyBeforeAWindow(t *testing.T) {
	const window = 10 * time.Minute
	stamped := time.Unix(1_000_000, 0) // the old leader's clock when it stored the oldest key
	for _, skew := range []time.Duration{time.Hour, 0, -time.Hour} {
		takeover := stamped.Add(skew + time.Second) // the new leader's clock, a second later
		for _, led := range []time.Duration{0, window / 2, window} {
			if cut := idempotencyCutoff(takeover.Add(led), takeover, stamped.UnixNano(), window); cut > stamped.UnixNano() {
				t.Errorf("clock %v off, led %v: cutoff %v after the oldest inherited stamp", skew, led, time.Unix(0, cut).Sub(stamped))
			}
		}
		later := takeover.Add(window + time.Minute)
		if cut := idempotencyCutoff(later, takeover, stamped.UnixNano(), window); skew >= 0 && cut <= stamped.UnixNano() {
			t.Errorf("clock %v off: a key kept for more than a window since the takeover is still not forgotten", skew)
		}
	}
	// With nothing inherited, a leader's own keys go a window after it stamped them.
	now := time.Unix(2_000_000, 0)
	if cut := idempotencyCutoff(now, now, 0, window); cut != now.Add(-window).UnixNano() {
		t.Errorf("cutoff %v, want now - window", cut)
	}
}
