package rpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/raftkv/raftkv/internal/wire"
)

// Frames are a 4-byte big-endian body length followed by the body. The
// body's first byte says what it is, so a reply can never be read as a
// request, and a new layout gets a new kind rather than a silent reread.
const (
	kindRequest  byte = 'Q'
	kindResponse byte = 'R'

	// MaxRequestBytes bounds a request body. Requests carry one write or one
	// transaction, both capped far below this by the node's own limits.
	MaxRequestBytes = 32 << 20
	// MaxResponseBytes bounds a reply body (a page of a listing at most).
	MaxResponseBytes = 64 << 20

	// maxNameBytes bounds the group and operation names, the node id and
	// the error code.
	maxNameBytes = 128
	// maxMessageBytes bounds an error message.
	maxMessageBytes = 64 << 10
)

// ErrFrame reports a frame that breaks the protocol: too long, truncated,
// of the wrong kind, or with a malformed field.
var ErrFrame = errors.New("rpc: malformed frame")

// Request is one call.
type Request struct {
	Group string
	Op    string
	// DeadlineMillis is the caller's remaining time when it sent the call
	// (0: none). A duration rather than a time, so no clocks are compared.
	DeadlineMillis uint64
	// Caller is the id of the client token a forwarded request is made
	// for ("" for a node's own work), so the receiver checks the client's
	// permissions rather than granting a node's.
	Caller string
	Args   []byte
}

// Response is the answer to one call. Code is empty on success; otherwise
// Message explains it and Result is empty.
type Response struct {
	Node    string
	Code    string
	Message string
	Result  []byte
}

// beginFrame reserves the length prefix; finishFrame fills it in.
func beginFrame(kind byte, size int) []byte {
	b := make([]byte, 4, 4+1+size)
	return append(b, kind)
}

func finishFrame(b []byte) []byte {
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
	return b
}

// encodeRequest returns the whole frame for r.
func encodeRequest(r Request) []byte {
	b := beginFrame(kindRequest, 4*binary.MaxVarintLen64+len(r.Group)+len(r.Op)+len(r.Caller)+len(r.Args))
	b = binary.AppendUvarint(b, r.DeadlineMillis)
	b = wire.AppendText(b, r.Group)
	b = wire.AppendText(b, r.Op)
	b = wire.AppendText(b, r.Caller)
	b = wire.AppendBytes(b, r.Args)
	return finishFrame(b)
}

// encodeResponse returns the whole frame for r.
func encodeResponse(r Response) []byte {
	b := beginFrame(kindResponse, 4*binary.MaxVarintLen64+len(r.Node)+len(r.Code)+len(r.Message)+len(r.Result))
	b = wire.AppendText(b, r.Node)
	b = wire.AppendText(b, r.Code)
	b = wire.AppendText(b, r.Message)
	b = wire.AppendBytes(b, r.Result)
	return finishFrame(b)
}

// decodeRequest parses a request body (the frame without its length).
func decodeRequest(body []byte) (Request, error) {
	d, err := openBody(body, kindRequest)
	if err != nil {
		return Request{}, err
	}
	r := Request{DeadlineMillis: d.Uvarint()}
	r.Group = name(d, "group")
	r.Op = name(d, "operation")
	r.Caller = name(d, "caller")
	r.Args = d.Bytes()
	if err := d.Finish(); err != nil {
		return Request{}, fmt.Errorf("%w: request: %v", ErrFrame, err)
	}
	return r, nil
}

// decodeResponse parses a response body (the frame without its length).
func decodeResponse(body []byte) (Response, error) {
	d, err := openBody(body, kindResponse)
	if err != nil {
		return Response{}, err
	}
	r := Response{Node: name(d, "node id")}
	r.Code = name(d, "error code")
	if msg := d.Bytes(); len(msg) > maxMessageBytes {
		d.Fail("error message too long")
	} else {
		r.Message = string(msg)
	}
	r.Result = d.Bytes()
	if err := d.Finish(); err != nil {
		return Response{}, fmt.Errorf("%w: response: %v", ErrFrame, err)
	}
	return r, nil
}

func openBody(body []byte, kind byte) (*wire.Decoder, error) {
	if len(body) == 0 || body[0] != kind {
		return nil, fmt.Errorf("%w: expected a frame of kind %q", ErrFrame, kind)
	}
	return wire.NewDecoder(body[1:]), nil
}

func name(d *wire.Decoder, what string) string {
	b := d.Bytes()
	if len(b) > maxNameBytes {
		d.Fail(what + " too long")
		return ""
	}
	return string(b)
}

// readFrame reads one frame's body, refusing one longer than limit before
// allocating for it.
func readFrame(r io.Reader, limit int) ([]byte, error) {
	var prefix [4]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(prefix[:])
	if n == 0 || uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("%w: body of %d bytes (limit %d)", ErrFrame, n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}
