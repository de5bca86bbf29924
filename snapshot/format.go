package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Format constants. Changing any of them makes old checkpoints unreadable,
// so they only change together with FormatVersion.
const (
	// FormatVersion is the version written by NewWriter and the only one
	// NewReader accepts.
	FormatVersion uint16 = 1

	// MaxRecordSize bounds a single record payload. It keeps a corrupt
	// length field from making the reader allocate gigabytes.
	MaxRecordSize = 64 << 20

	// MaxNameLen bounds the kind and group strings in the header.
	MaxNameLen = 1024
)

const (
	magic      = "RKVSNAP\x00"
	tagRecord  = 0x01
	tagTrailer = 0x02
	bufSize    = 64 << 10
)

// Errors returned by this package. Callers match them with errors.Is; the
// returned errors carry more detail through wrapping.
var (
	// ErrCorrupt reports a stream that is damaged or truncated: bad magic,
	// a checksum mismatch, an impossible length, a missing or wrong trailer
	// or trailing garbage.
	ErrCorrupt = errors.New("snapshot: corrupt stream")

	// ErrUnsupportedVersion reports a well-formed stream written in a
	// format version this build does not know (usually a newer binary).
	ErrUnsupportedVersion = errors.New("snapshot: unsupported format version")

	// ErrInvalidHeader reports a Header that cannot be written: an empty
	// kind or a name longer than MaxNameLen.
	ErrInvalidHeader = errors.New("snapshot: invalid header")

	// ErrRecordTooLarge reports a record payload over MaxRecordSize.
	ErrRecordTooLarge = errors.New("snapshot: record too large")

	// ErrClosed reports a write to a Writer after Close.
	ErrClosed = errors.New("snapshot: writer closed")
)

// castagnoli is CRC32C, which has hardware support on amd64 and arm64 and
// detects every single-byte error and every burst up to 32 bits.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header identifies a checkpoint: what produced it and up to which raft log
// entry it reflects.
type Header struct {
	Kind  string // state machine kind, e.g. "kv" or "registry"
	Group string // raft group name, e.g. "meta" or "shard-3"
	Index uint64 // last log index included in the checkpoint
	Term  uint64 // term of that entry; 0 when unknown
}

func (h Header) validate() error {
	if h.Kind == "" {
		return fmt.Errorf("%w: empty kind", ErrInvalidHeader)
	}
	if len(h.Kind) > MaxNameLen || len(h.Group) > MaxNameLen {
		return fmt.Errorf("%w: kind or group longer than %d bytes", ErrInvalidHeader, MaxNameLen)
	}
	return nil
}

// appendHeader encodes h including its trailing CRC.
func appendHeader(b []byte, h Header) []byte {
	start := len(b)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, FormatVersion)
	b = appendName(b, h.Kind)
	b = appendName(b, h.Group)
	b = binary.BigEndian.AppendUint64(b, h.Index)
	b = binary.BigEndian.AppendUint64(b, h.Term)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

func appendName(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}
