package logstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/wire"
)

// An entry is encoded as
//
//	[version 1][type][term uvarint][appended-at unix ns varint][data][extensions]
//
// with data and extensions uvarint-length-prefixed. A fixed layout rather
// than msgpack: no reflection on the write path, and a version byte for
// whatever comes next.
const entryVersion = 1

// EncodeEntry encodes l (all but its index, which the log keeps apart).
func EncodeEntry(l *raft.Log) []byte {
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+len(l.Data)+len(l.Extensions)+2*binary.MaxVarintLen32)
	b = append(b, entryVersion, byte(l.Type))
	b = binary.AppendUvarint(b, l.Term)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.AppendVarint(b, at)
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	return append(b, l.Extensions...)
}

// DecodeEntry fills l from an entry encoded by this package (in a segment,
// or in the bolt file of log format 2). Everything kept is copied.
func DecodeEntry(index uint64, v []byte, l *raft.Log) error { return decodeEntry(index, v, l, true) }

// decodeEntry fills l from v; with copy false, l's byte fields alias v.
func decodeEntry(index uint64, v []byte, l *raft.Log, copy bool) error {
	if len(v) < 2 || v[0] != entryVersion {
		return fmt.Errorf("%w: index %d: unknown entry layout", ErrCorrupt, index)
	}
	d := wire.NewDecoder(v[2:])
	term := d.Uvarint()
	at := d.Varint()
	data := d.Bytes()
	ext := d.Bytes()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("%w: index %d: %v", ErrCorrupt, index, err)
	}
	*l = raft.Log{Index: index, Term: term, Type: raft.LogType(v[1])}
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	if len(data) > 0 {
		l.Data = data
		if copy {
			l.Data = append([]byte(nil), data...)
		}
	}
	if len(ext) > 0 {
		l.Extensions = ext
		if copy {
			l.Extensions = append([]byte(nil), ext...)
		}
	}
	return nil
}

func appendUint64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func readUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// A segment is a sequence of records, each
//
//	[body length u32][CRC-32C of body u32][body]
//
// little-endian, whose body starts with its kind. A length of zero is never
// written: it marks the end of a segment's records, as a preallocated file
// reads as zeros past what was written.
const recordHeader = 8

// Record kinds.
const (
	// recCheckpoint opens every segment: the groups and their stable
	// values at that moment, so older segments are never needed for them.
	//	[next group id][count]{[id][name][count]{[key][value]}}
	recCheckpoint = 'C'
	// recGroup declares a group: [id][name].
	recGroup = 'G'
	// recDrop deletes a group and everything it holds: [id].
	recDrop = 'X'
	// recStable sets a stable value: [id][key][value].
	recStable = 'S'
	// recDelete removes entries lo..hi: [id][lo][hi].
	recDelete = 'D'
	// recAppend appends entries first.. and discards any stored from
	// first on: [id][first][count]{[entry]}.
	recAppend = 'E'
	// recMove holds copies of entries that lived in a segment about to be
	// deleted; they replace the stored locations and truncate nothing.
	// Layout as recAppend.
	recMove = 'M'
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record builds one record in a buffer: start it, add fields, finish it.
type record struct{ b []byte }

func newRecord(kind byte, group uint64, sizeHint int) record {
	b := make([]byte, recordHeader, recordHeader+1+binary.MaxVarintLen64+sizeHint)
	b = append(b, kind)
	b = binary.AppendUvarint(b, group)
	return record{b: b}
}

func (r *record) uvarint(v uint64) { r.b = binary.AppendUvarint(r.b, v) }

func (r *record) bytes(v []byte) { r.b = wire.AppendBytes(r.b, v) }

// finish fills in the header and returns the record's bytes.
func (r *record) finish() []byte {
	body := r.b[recordHeader:]
	binary.LittleEndian.PutUint32(r.b[0:4], uint32(len(body)))
	binary.LittleEndian.PutUint32(r.b[4:8], crc32.Checksum(body, castagnoli))
	return r.b
}

// entriesRecord encodes an append or move of consecutive entries and
// returns where each entry's bytes start and how long they are, relative to
// the record's first byte.
func entriesRecord(kind byte, group uint64, first uint64, encoded [][]byte) ([]byte, []int64, []int) {
	size := 0
	for _, e := range encoded {
		size += binary.MaxVarintLen32 + len(e)
	}
	r := newRecord(kind, group, 2*binary.MaxVarintLen64+size)
	r.uvarint(first)
	r.uvarint(uint64(len(encoded)))
	offs := make([]int64, len(encoded))
	lens := make([]int, len(encoded))
	for i, e := range encoded {
		r.b = binary.AppendUvarint(r.b, uint64(len(e)))
		offs[i] = int64(len(r.b))
		lens[i] = len(e)
		r.b = append(r.b, e...)
	}
	return r.finish(), offs, lens
}
