package logstore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/wire"
)

// An entry is stored under its big-endian index as
//
//	[version 1][type][term uvarint][appended-at unix ns varint][data][extensions]
//
// with data and extensions uvarint-length-prefixed. A fixed layout rather
// than msgpack: no reflection on the write path, and a version byte for
// whatever comes next.
const entryVersion = 1

func encodeLog(l *raft.Log) []byte {
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

// decodeLog fills l from a stored value. The value belongs to a bolt
// transaction, so everything kept is copied.
func decodeLog(index uint64, v []byte, l *raft.Log) error {
	if len(v) < 2 || v[0] != entryVersion {
		return fmt.Errorf("%w: index %d: unknown layout", ErrCorrupt, index)
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
		l.Data = append([]byte(nil), data...)
	}
	if len(ext) > 0 {
		l.Extensions = append([]byte(nil), ext...)
	}
	return nil
}
