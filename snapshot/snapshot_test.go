package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

func encode(t testing.TB, h Header, recs [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for _, p := range recs {
		if err := w.WriteRecord(p); err != nil {
			t.Fatalf("WriteRecord: %v", err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

// readAll reads a whole stream. It returns the header, the records and the
// first error that is not the clean io.EOF.
func readAll(b []byte) (Header, [][]byte, error) {
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return Header{}, nil, err
	}
	var recs [][]byte
	for {
		p, err := r.Next()
		if err == io.EOF {
			return r.Header(), recs, nil
		}
		if err != nil {
			return r.Header(), recs, err
		}
		recs = append(recs, p)
	}
}

func TestRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 200; iter++ {
		h := Header{Kind: "kv", Group: "shard-" + strings.Repeat("x", rng.IntN(5)), Index: rng.Uint64(), Term: rng.Uint64N(10)}
		recs := make([][]byte, rng.IntN(50))
		for i := range recs {
			recs[i] = make([]byte, rng.IntN(300))
			for j := range recs[i] {
				recs[i][j] = byte(rng.UintN(256))
			}
		}
		gotH, got, err := readAll(encode(t, h, recs))
		if err != nil {
			t.Fatalf("iter %d: read: %v", iter, err)
		}
		if gotH != h {
			t.Fatalf("iter %d: header %+v, want %+v", iter, gotH, h)
		}
		if len(got) != len(recs) {
			t.Fatalf("iter %d: %d records, want %d", iter, len(got), len(recs))
		}
		for i := range recs {
			if !bytes.Equal(got[i], recs[i]) {
				t.Fatalf("iter %d: record %d differs", iter, i)
			}
		}
	}
}

func TestLargeRecordRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{0xab}, 3<<20) // crosses the reader's chunking
	_, got, err := readAll(encode(t, Header{Kind: "kv"}, [][]byte{big, nil, {1}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !bytes.Equal(got[0], big) || len(got[1]) != 0 || !bytes.Equal(got[2], []byte{1}) {
		t.Fatal("records differ after round trip")
	}
}

func sampleStream(t testing.TB) []byte {
	return encode(t, Header{Kind: "kv", Group: "shard-1", Index: 42, Term: 3},
		[][]byte{[]byte("alpha"), {}, []byte("a longer record payload"), {0, 1, 2, 3}})
}

// TestEveryByteFlipDetected flips each byte of a sample stream with several
// masks; the damage must surface as an error before a clean io.EOF.
func TestEveryByteFlipDetected(t *testing.T) {
	orig := sampleStream(t)
	for i := range orig {
		for _, mask := range []byte{0x01, 0x02, 0x03, 0x10, 0x80, 0xff} {
			b := bytes.Clone(orig)
			b[i] ^= mask
			assertRefused(t, b, "flip byte %d with %#x", i, mask)
		}
	}
}

func TestEveryTruncationDetected(t *testing.T) {
	orig := sampleStream(t)
	for n := 0; n < len(orig); n++ {
		assertRefused(t, orig[:n], "truncated to %d of %d bytes", n, len(orig))
	}
}

func TestTrailingDataDetected(t *testing.T) {
	assertRefused(t, append(sampleStream(t), 0), "one extra byte")
}

func assertRefused(t *testing.T, b []byte, format string, args ...any) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf(format+": NewReader error %v is not ErrCorrupt", append(args, err)...)
		}
		return
	}
	for {
		_, err := r.Next()
		if err == io.EOF {
			t.Fatalf(format+": reached clean EOF", args...)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf(format+": error %v does not wrap ErrCorrupt", append(args, err)...)
			}
			if _, again := r.Next(); again != err {
				t.Fatalf(format+": error not sticky: %v then %v", append(args, err, again)...)
			}
			return
		}
	}
}

func TestUnknownVersion(t *testing.T) {
	b := sampleStream(t)
	binary.BigEndian.PutUint16(b[len(magic):], FormatVersion+1)
	_, err := NewReader(bytes.NewReader(b))
	if !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("got %v, want ErrUnsupportedVersion", err)
	}
	if !strings.Contains(err.Error(), "2") {
		t.Fatalf("error %q does not name the version", err)
	}
}

func TestWriterRejects(t *testing.T) {
	if _, err := NewWriter(io.Discard, Header{}); !errors.Is(err, ErrInvalidHeader) {
		t.Fatalf("empty kind: got %v", err)
	}
	if _, err := NewWriter(io.Discard, Header{Kind: "kv", Group: strings.Repeat("g", MaxNameLen+1)}); !errors.Is(err, ErrInvalidHeader) {
		t.Fatalf("long group: got %v", err)
	}
	w, err := NewWriter(io.Discard, Header{Kind: "kv"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecord(make([]byte, MaxRecordSize+1)); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("big record: got %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.WriteRecord(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: got %v", err)
	}
}

// TestHugeLengthDoesNotAllocate checks that an in-range but false length on
// a short stream fails quickly without allocating the claimed size.
func TestHugeLengthDoesNotAllocate(t *testing.T) {
	b := encode(t, Header{Kind: "kv"}, [][]byte{[]byte("x")})
	hdr := len(encode(t, Header{Kind: "kv"}, nil)) - 13 // minus the empty trailer
	binary.BigEndian.PutUint32(b[hdr+1:], MaxRecordSize)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, _ = readAll(b)
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Fatalf("reading a %d-byte stream allocated %d bytes", len(b), n)
	}
	assertRefused(t, b, "huge length")
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriterSurfacesIOError(t *testing.T) {
	w, err := NewWriter(&failWriter{n: 10}, Header{Kind: "kv"})
	if err != nil {
		t.Fatal(err)
	}
	_ = w.WriteRecord(make([]byte, 100))
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Close: got %v, want the write error", err)
	}
}
