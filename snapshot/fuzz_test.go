package snapshot

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the reader. It must never panic, and
// any failure other than a clean io.EOF must be a package error.
func FuzzReader(f *testing.F) {
	f.Add(sampleStream(f))
	f.Add(encode(f, Header{Kind: "registry", Group: "meta"}, nil))
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("NewReader: unexpected error %v", err)
			}
			return
		}
		for i := 0; ; i++ {
			_, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Next: unexpected error %v", err)
				}
				return
			}
		}
	})
}
