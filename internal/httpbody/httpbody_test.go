package httpbody

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestABodyOfDeclaredLengthIsReadWhole(t *testing.T) {
	got, err := Read(strings.NewReader("hello"), 5, 64)
	if err != nil || string(got) != "hello" || cap(got) != 5 {
		t.Fatalf("Read = %q (cap %d), %v; want \"hello\" in a buffer of 5", got, cap(got), err)
	}
	got, err = Read(strings.NewReader(""), 0, 64)
	if err != nil || len(got) != 0 {
		t.Fatalf("an empty body: %q, %v", got, err)
	}
}

func TestABodyShorterThanDeclaredIsAnError(t *testing.T) {
	for _, body := range []string{"", "hel"} {
		if _, err := Read(strings.NewReader(body), 5, 64); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("a body of %d bytes declared as 5: %v, want io.ErrUnexpectedEOF", len(body), err)
		}
	}
}

func TestAnUndeclaredOrLargeBodyIsReadToItsEnd(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100)
	for _, declared := range []int64{-1, 100} {
		got, err := Read(bytes.NewReader(big), declared, 64)
		if err != nil || !bytes.Equal(got, big) {
			t.Errorf("declared %d: %d bytes, %v; want all 100", declared, len(got), err)
		}
	}
}
