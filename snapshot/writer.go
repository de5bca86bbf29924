package snapshot

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// Writer streams records in the checkpoint format. It buffers internally;
// nothing is guaranteed to reach the underlying writer before Close.
// A Writer is not safe for concurrent use.
type Writer struct {
	bw    *bufio.Writer
	sum   uint32 // running CRC32C of every byte written so far
	count uint64
	err   error // sticky: the first failure, or ErrClosed after Close
	scr   [9]byte
}

// NewWriter validates h and writes the header to w (buffered).
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	sw := &Writer{bw: bufio.NewWriterSize(w, bufSize)}
	sw.write(appendHeader(nil, h))
	if sw.err != nil {
		return nil, sw.err
	}
	return sw, nil
}

// write appends p to the stream and the running checksum.
func (w *Writer) write(p []byte) {
	if w.err != nil {
		return
	}
	w.sum = crc32.Update(w.sum, castagnoli, p)
	if _, err := w.bw.Write(p); err != nil {
		w.err = fmt.Errorf("snapshot: write: %w", err)
	}
}

// WriteRecord appends one record. The payload is copied into the buffer, so
// p may be reused as soon as the call returns.
func (w *Writer) WriteRecord(p []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(p) > MaxRecordSize {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrRecordTooLarge, len(p), MaxRecordSize)
	}
	w.scr[0] = tagRecord
	binary.BigEndian.PutUint32(w.scr[1:5], uint32(len(p)))
	rc := crc32.Update(crc32.Checksum(w.scr[1:5], castagnoli), castagnoli, p)
	w.write(w.scr[:5])
	w.write(p)
	binary.BigEndian.PutUint32(w.scr[:4], rc)
	w.write(w.scr[:4])
	if w.err != nil {
		return w.err
	}
	w.count++
	return nil
}

// Close writes the trailer and flushes the buffer. It does not close the
// underlying writer. Calling Close again returns the first call's result.
func (w *Writer) Close() error {
	if w.err != nil {
		if w.err == ErrClosed {
			return nil
		}
		return w.err
	}
	w.scr[0] = tagTrailer
	binary.BigEndian.PutUint64(w.scr[1:9], w.count)
	w.write(w.scr[:9])
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], w.sum)
	w.write(sum[:])
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.err = fmt.Errorf("snapshot: flush: %w", err)
		}
	}
	if w.err != nil {
		return w.err
	}
	w.err = ErrClosed
	return nil
}

// Count returns the number of records written so far.
func (w *Writer) Count() uint64 { return w.count }
