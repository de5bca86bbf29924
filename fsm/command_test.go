package fsm

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestCommandRoundTrip(t *testing.T) {
	cases := []Command{
		{Type: CommandPut, Key: "a", Value: []byte("v"), Cond: Condition{}},
		{Type: CommandPut, Key: "", Value: []byte{}, Cond: Condition{Kind: CondAbsent}},
		{Type: CommandPut, Key: "k/é", Value: bytes.Repeat([]byte{0}, 300), Cond: Condition{Kind: CondRevision, Revision: 1 << 40}},
		{Type: CommandDelete, Key: "a", Cond: Condition{Kind: CondRevision, Revision: 7}},
		{Type: CommandDelete, Key: "b"},
		{Type: CommandNoop},
	}
	for _, c := range cases {
		b, err := Encode(c)
		if err != nil {
			t.Fatalf("Encode(%+v): %v", c, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", c, err)
		}
		if got.Type != c.Type || got.Key != c.Key || got.Cond != c.Cond || !bytes.Equal(got.Value, c.Value) {
			t.Fatalf("round trip: got %+v, want %+v", got, c)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := EncodePut("key", []byte("value"), Condition{Kind: CondRevision, Revision: 3})
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"version only", []byte{CommandVersion}, ErrMalformed},
		{"future version", append([]byte{CommandVersion + 1}, good[1:]...), ErrUnknownVersion},
		{"unknown type", []byte{CommandVersion, 99}, ErrUnknownCommand},
		{"zero type", []byte{CommandVersion, 0}, ErrMalformed},
		{"zero version", append([]byte{0}, good[1:]...), ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), ErrMalformed},
		{"noop with payload", append(EncodeNoop(), 1), ErrMalformed},
		{"bad cond kind", []byte{CommandVersion, byte(CommandDelete), 9, 0, 1, 'k'}, ErrMalformed},
		{"huge key length", []byte{CommandVersion, byte(CommandDelete), 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, ErrMalformed},
	}
	for _, tc := range cases {
		if _, err := Decode(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: Decode error %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestEncodePanicsOnUndefinedCondition(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("EncodePut with an undefined CondKind did not panic")
		}
	}()
	EncodePut("k", nil, Condition{Kind: 7})
}

func TestEncodeUnknownType(t *testing.T) {
	if _, err := Encode(Command{Type: 42}); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("got %v", err)
	}
}

// FuzzDecode checks that Decode never panics and that whatever it accepts
// re-encodes to something that decodes to the same command.
func FuzzDecode(f *testing.F) {
	f.Add(EncodePut("key", []byte("value"), Condition{Kind: CondRevision, Revision: 9}))
	f.Add(EncodeDelete("key", Condition{Kind: CondAbsent}))
	f.Add(EncodeNoop())
	f.Add([]byte{})
	body := Txn{
		Compares: []Compare{{Key: "a", Target: TargetValue, Op: OpEqual, Value: []byte("10")}},
		Success:  []Op{{Kind: OpPut, Key: "a", Value: []byte("5")}, {Kind: OpDelete, Key: "b"}},
		Failure:  []Op{{Kind: OpGet, Key: "a"}},
	}
	for _, t := range []CommandType{CommandTxn, CommandTxnPrepare, CommandTxnDecide, CommandTxnResolve, CommandTxnResolved, CommandTxnGC} {
		f.Add(EncodeTxn(t, TxnCmd{ID: "shard-1.ab", Primary: "shard-1", Participants: []string{"shard-1", "shard-2"}, Now: 7, Deadline: 9, Before: 3, Body: body}))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		b2, err := Encode(c)
		if err != nil {
			t.Fatalf("Encode of decoded %+v: %v", c, err)
		}
		c2, err := Decode(b2)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(c.Value) == 0 && len(c2.Value) == 0 {
			c.Value, c2.Value = nil, nil
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("re-decode: got %+v, want %+v", c2, c)
		}
	})
}
