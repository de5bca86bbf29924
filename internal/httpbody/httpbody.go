// Package httpbody reads HTTP bodies, requests' and answers' alike, into
// memory: the one place that decides how.
package httpbody

import "io"

// Read reads all of r. When the body declared a length (declared >= 0, as
// net/http's ContentLength, which it then enforces) of at most exact, it is
// read into a buffer of that size: io.ReadAll's starts at 512 bytes and
// grows by copying. A body shorter than it declared is an error
// (io.ErrUnexpectedEOF). Pass -1 when the length is unknown or not to be
// trusted (the answer to a HEAD).
func Read(r io.Reader, declared, exact int64) ([]byte, error) {
	if declared < 0 || declared > exact {
		return io.ReadAll(r)
	}
	buf := make([]byte, declared)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}
