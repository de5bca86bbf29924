package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Reader reads and verifies a checkpoint stream. It is not safe for
// concurrent use.
type Reader struct {
	br    *bufio.Reader
	sum   uint32 // running CRC32C of every byte consumed so far
	h     Header
	count uint64
	err   error // sticky: io.EOF after a verified trailer, or the failure
}

// NewReader reads and validates the header. A stream that does not start
// with a valid header yields an error wrapping ErrCorrupt, or
// ErrUnsupportedVersion for a well-formed header of an unknown version.
func NewReader(r io.Reader) (*Reader, error) {
	sr := &Reader{br: bufio.NewReaderSize(r, bufSize)}
	if err := sr.readHeader(); err != nil {
		return nil, err
	}
	return sr, nil
}

// Header returns the stream's validated header.
func (r *Reader) Header() Header { return r.h }

// Next returns the next record payload in a freshly allocated slice the
// caller owns. It returns io.EOF only once the trailer has been read and
// the record count and whole-stream checksum match. Any damage, including
// truncation anywhere, yields an error wrapping ErrCorrupt. Errors are
// sticky.
func (r *Reader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	p, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	r.count++
	return p, nil
}

func (r *Reader) next() ([]byte, error) {
	var tag [1]byte
	if err := r.readFull(tag[:]); err != nil {
		return nil, truncated(err, "record tag")
	}
	switch tag[0] {
	case tagRecord:
		return r.readRecord()
	case tagTrailer:
		if err := r.readTrailer(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	default:
		return nil, corruptf("unknown tag 0x%02x after record %d", tag[0], r.count)
	}
}

func (r *Reader) readRecord() ([]byte, error) {
	var lb [4]byte
	if err := r.readFull(lb[:]); err != nil {
		return nil, truncated(err, "record length")
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n > MaxRecordSize {
		return nil, corruptf("record %d length %d exceeds %d", r.count, n, MaxRecordSize)
	}
	p, err := r.readPayload(int(n))
	if err != nil {
		return nil, truncated(err, "record payload")
	}
	var cb [4]byte
	if err := r.readFull(cb[:]); err != nil {
		return nil, truncated(err, "record checksum")
	}
	want := crc32.Update(crc32.Checksum(lb[:], castagnoli), castagnoli, p)
	if got := binary.BigEndian.Uint32(cb[:]); got != want {
		return nil, corruptf("record %d checksum mismatch", r.count)
	}
	return p, nil
}

// readPayload grows the buffer as data actually arrives, so a corrupt but
// in-range length on a short stream costs at most the stream's size.
func (r *Reader) readPayload(n int) ([]byte, error) {
	const chunk = 1 << 20
	p := make([]byte, 0, min(n, chunk))
	for len(p) < n {
		k := min(n-len(p), chunk)
		if cap(p)-len(p) < k {
			p = append(p, make([]byte, k)...)[:len(p)]
		}
		if err := r.readFull(p[len(p) : len(p)+k]); err != nil {
			return nil, err
		}
		p = p[:len(p)+k]
	}
	return p, nil
}

func (r *Reader) readTrailer() error {
	var cb [8]byte
	if err := r.readFull(cb[:]); err != nil {
		return truncated(err, "trailer count")
	}
	if got := binary.BigEndian.Uint64(cb[:]); got != r.count {
		return corruptf("trailer says %d records, read %d", got, r.count)
	}
	want := r.sum
	if err := r.readFull(cb[:4]); err != nil {
		return truncated(err, "trailer checksum")
	}
	if got := binary.BigEndian.Uint32(cb[:4]); got != want {
		return corruptf("stream checksum mismatch")
	}
	// Bytes after the trailer mean the stream is not what was written.
	if _, err := r.br.ReadByte(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("snapshot: read after trailer: %w", err)
		}
		return corruptf("data after trailer")
	}
	return nil
}

func (r *Reader) readHeader() error {
	var fixed [len(magic) + 2]byte
	if err := r.readFull(fixed[:]); err != nil {
		return truncated(err, "header")
	}
	if string(fixed[:len(magic)]) != magic {
		return corruptf("bad magic")
	}
	// The version is checked before the rest is parsed: a future version
	// may lay the header out differently.
	if v := binary.BigEndian.Uint16(fixed[len(magic):]); v != FormatVersion {
		return fmt.Errorf("%w: %d (this build reads %d)", ErrUnsupportedVersion, v, FormatVersion)
	}
	var err error
	if r.h.Kind, err = r.readName("kind"); err != nil {
		return err
	}
	if r.h.Group, err = r.readName("group"); err != nil {
		return err
	}
	var nums [16]byte
	if err := r.readFull(nums[:]); err != nil {
		return truncated(err, "header index/term")
	}
	r.h.Index = binary.BigEndian.Uint64(nums[:8])
	r.h.Term = binary.BigEndian.Uint64(nums[8:])
	want := r.sum
	if err := r.readFull(nums[:4]); err != nil {
		return truncated(err, "header checksum")
	}
	if binary.BigEndian.Uint32(nums[:4]) != want {
		return corruptf("header checksum mismatch")
	}
	if r.h.Kind == "" {
		return corruptf("empty kind")
	}
	return nil
}

func (r *Reader) readName(what string) (string, error) {
	var lb [2]byte
	if err := r.readFull(lb[:]); err != nil {
		return "", truncated(err, what+" length")
	}
	n := binary.BigEndian.Uint16(lb[:])
	if n > MaxNameLen {
		return "", corruptf("%s length %d exceeds %d", what, n, MaxNameLen)
	}
	b := make([]byte, n)
	if err := r.readFull(b); err != nil {
		return "", truncated(err, what)
	}
	return string(b), nil
}

// readFull reads exactly len(p) bytes and adds them to the running checksum.
func (r *Reader) readFull(p []byte) error {
	if _, err := io.ReadFull(r.br, p); err != nil {
		return err
	}
	r.sum = crc32.Update(r.sum, castagnoli, p)
	return nil
}

// truncated turns an end of input into ErrCorrupt: the format always ends
// with a trailer, so running out of bytes anywhere else is damage. Other
// I/O errors are passed through wrapped, since they say nothing about the
// stream's integrity.
func truncated(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptf("truncated in %s", what)
	}
	return fmt.Errorf("snapshot: reading %s: %w", what, err)
}
