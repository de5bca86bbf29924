package cluster

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzHello: the raft hello and its answer are read from whoever connects
// to the raft port; a bad one is an error, never a panic, and a hello that
// reads back is the one that was written.
func FuzzHello(f *testing.F) {
	good := hello{Cluster: "5f0c1d", Group: "shard-1", From: "node3", FromInc: "114ca027", To: "node2", ToInc: "0b67202e"}
	f.Add(good.encode()[1:], []byte{verdictOK})
	f.Add(hello{Group: "meta"}.encode()[1:], append([]byte{verdictRefused, 0, 3}, "why"...))
	f.Add([]byte("KVH\x02"), []byte{7})
	f.Fuzz(func(t *testing.T, h, verdict []byte) {
		if got, err := readHello(bytes.NewReader(h)); err == nil {
			if again, err := readHello(bytes.NewReader(got.encode()[1:])); err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("hello %+v reads back as %+v, %v", got, again, err)
			}
		}
		_, _ = readVerdict(bytes.NewReader(verdict))
	})
}

func TestAHelloAndItsAnswerRoundTrip(t *testing.T) {
	want := hello{Cluster: "c", Group: "shard-2", From: "a", FromInc: "i1", To: "b", ToInc: "i2"}
	got, err := readHello(bytes.NewReader(want.encode()[1:]))
	if err != nil || got != want {
		t.Fatalf("hello read back as %+v, %v", got, err)
	}
	var buf bytes.Buffer
	if err := writeVerdict(&buf, "not you"); err != nil {
		t.Fatal(err)
	}
	if why, err := readVerdict(&buf); err != nil || why != "not you" {
		t.Fatalf("refusal read back as %q, %v", why, err)
	}
	buf.Reset()
	_ = writeVerdict(&buf, "")
	if why, err := readVerdict(&buf); err != nil || why != "" {
		t.Fatalf("acceptance read back as %q, %v", why, err)
	}
}
