// Package wire holds the little binary reader and writers shared by
// raftkv's encodings (log entries, checkpoints, the node-to-node frames and
// the write-ahead log): uvarints, varints and length-prefixed byte strings,
// with the first error remembered so a decoder checks once at the end.
package wire

import (
	"encoding/binary"
	"fmt"
)

// Decoder reads fields from a byte slice. After the first problem every read
// returns a zero value; Finish reports it.
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder reads b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Err returns the first problem met so far.
func (d *Decoder) Err() error { return d.err }

// Fail records a problem (the first one wins) and stops further reads.
func (d *Decoder) Fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s at %d bytes from the end", msg, len(d.b))
	}
	d.b = nil
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if len(d.b) < 1 {
		d.Fail("short byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.Fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Varint reads a signed varint.
func (d *Decoder) Varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.Fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Bytes reads a uvarint length and that many bytes. The result aliases the
// input, so a corrupt length never causes an allocation.
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.Fail("length past end")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// Len is how many bytes are left to read.
func (d *Decoder) Len() int { return len(d.b) }

// Text reads a length-prefixed string (a copy).
func (d *Decoder) Text() string { return string(d.Bytes()) }

// Count reads an element count and refuses one that could not fit in the
// remaining bytes when each element takes at least minSize bytes.
func (d *Decoder) Count(minSize int) int {
	n := d.Uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/minSize) {
		d.Fail("count past end")
		return 0
	}
	return int(n)
}

// Finish reports the first problem, or bytes left over.
func (d *Decoder) Finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return d.err
}

// NewerEntryError reports a committed log entry whose envelope version or
// command type this build does not know: a newer raftkv wrote it. Applying
// it is impossible and skipping it would let this replica diverge from
// upgraded ones, so the state machine stops the node with this error (fsm
// and registry both; see fsm/DESIGN.md, "Malformed entries").
type NewerEntryError struct {
	Machine string // "fsm" or "registry", for the message
	Group   string
	Index   uint64
	Version uint8 // the entry's envelope version
	Known   uint8 // the envelope version this build writes
	Type    uint8
	Err     error // the decoder's ErrUnknownVersion or ErrUnknownCommand, for errors.Is
}

func (e *NewerEntryError) Error() string {
	if e.Version != e.Known {
		return fmt.Sprintf("%s: group %q: log entry envelope version %d at index %d was written by a newer raftkv; upgrade this node",
			e.Machine, e.Group, e.Version, e.Index)
	}
	return fmt.Sprintf("%s: group %q: log entry type %d at index %d was written by a newer raftkv; upgrade this node",
		e.Machine, e.Group, e.Type, e.Index)
}

func (e *NewerEntryError) Unwrap() error { return e.Err }

// AppendBytes appends v with its uvarint length before it (what Bytes reads).
func AppendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// AppendText appends s with its uvarint length before it (what Text reads).
func AppendText(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
