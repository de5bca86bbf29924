package raftlane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/wire"
)

// A frame is a 4-byte big-endian body length, then the body, whose first
// byte is its kind:
//
//	request 'A': [id][group][protocol version][header id][header addr]
//	             [term][prev index][prev term][leader commit]
//	             [count]{[index][type][term][appended-at ns][data][extensions]}
//	reply   'a': [id][status 0]  [protocol version][header id][header addr]
//	                             [term][last log][flags: 1 success, 2 no retry backoff]
//	             [id][status 1]  [error message]
//
// Numbers are uvarints (appended-at a varint, 0 for none), byte strings
// uvarint-length-prefixed. A fixed layout rather than raft's msgpack: no
// reflection on the hot path. The deprecated Leader field is not carried:
// raft reads the leader from the header's addr, which every raftkv sends.
const (
	kindRequest = 'A'
	kindReply   = 'a'

	statusOK    = 0
	statusError = 1

	flagSuccess        = 1
	flagNoRetryBackoff = 2

	frameHeader = 4
	// maxFrame bounds a body before it is allocated. Appends above
	// Config.MaxBatchBytes take the group's own transport, so real frames
	// stay far below it.
	maxFrame = 64 << 20
	// maxGroupName bounds a request's group name.
	maxGroupName = 128
	// maxErrorLen bounds an error reply's message.
	maxErrorLen = 4 << 10
)

var errFrame = errors.New("raftlane: malformed frame")

// startFrame returns a buffer holding room for the length and the kind.
func startFrame(kind byte, id uint64, sizeHint int) []byte {
	b := make([]byte, frameHeader, frameHeader+1+binary.MaxVarintLen64+sizeHint)
	b = append(b, kind)
	return binary.AppendUvarint(b, id)
}

// finishFrame fills in the length.
func finishFrame(b []byte) []byte {
	binary.BigEndian.PutUint32(b[:frameHeader], uint32(len(b)-frameHeader))
	return b
}

func appendHeader(b []byte, h *raft.RPCHeader) []byte {
	b = binary.AppendUvarint(b, uint64(h.ProtocolVersion))
	b = wire.AppendBytes(b, h.ID)
	return wire.AppendBytes(b, h.Addr)
}

func readHeader(d *wire.Decoder) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(d.Uvarint()), ID: nonEmpty(d.Bytes()), Addr: nonEmpty(d.Bytes())}
}

// nonEmpty keeps a missing field nil, as raft's own decoder leaves it.
func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// requestSize is what an append's entries carry, for the size hint and
// Config.MaxBatchBytes.
func requestSize(a *raft.AppendEntriesRequest) int {
	n := 0
	for _, e := range a.Entries {
		n += len(e.Data) + len(e.Extensions) + 4*binary.MaxVarintLen64
	}
	return n
}

// encodeRequest encodes an append for group as frame id.
func encodeRequest(id uint64, group string, a *raft.AppendEntriesRequest) []byte {
	b := startFrame(kindRequest, id, 64+len(group)+len(a.ID)+len(a.Addr)+requestSize(a))
	b = wire.AppendText(b, group)
	b = appendHeader(b, &a.RPCHeader)
	b = binary.AppendUvarint(b, a.Term)
	b = binary.AppendUvarint(b, a.PrevLogEntry)
	b = binary.AppendUvarint(b, a.PrevLogTerm)
	b = binary.AppendUvarint(b, a.LeaderCommitIndex)
	b = binary.AppendUvarint(b, uint64(len(a.Entries)))
	for _, e := range a.Entries {
		b = binary.AppendUvarint(b, e.Index)
		b = append(b, byte(e.Type))
		b = binary.AppendUvarint(b, e.Term)
		var at int64
		if !e.AppendedAt.IsZero() {
			at = e.AppendedAt.UnixNano()
		}
		b = binary.AppendVarint(b, at)
		b = wire.AppendBytes(b, e.Data)
		b = wire.AppendBytes(b, e.Extensions)
	}
	return finishFrame(b)
}

// decodeRequest decodes a request body (after its kind byte). The
// entries' bytes alias body, which must not be reused.
func decodeRequest(body []byte) (id uint64, group string, a *raft.AppendEntriesRequest, err error) {
	d := wire.NewDecoder(body)
	id = d.Uvarint()
	name := d.Bytes()
	if len(name) > maxGroupName {
		d.Fail("group name too long")
	}
	group = string(name)
	a = &raft.AppendEntriesRequest{RPCHeader: readHeader(d)}
	a.Term = d.Uvarint()
	a.PrevLogEntry = d.Uvarint()
	a.PrevLogTerm = d.Uvarint()
	a.LeaderCommitIndex = d.Uvarint()
	// Each entry takes at least 6 bytes, so a count past what is left
	// fails before anything is allocated.
	n := d.Count(6)
	if n > 0 {
		logs := make([]raft.Log, n)
		a.Entries = make([]*raft.Log, n)
		for i := range logs {
			l := &logs[i]
			l.Index = d.Uvarint()
			l.Type = raft.LogType(d.Byte())
			l.Term = d.Uvarint()
			if at := d.Varint(); at != 0 {
				l.AppendedAt = time.Unix(0, at)
			}
			l.Data = nonEmpty(d.Bytes())
			l.Extensions = nonEmpty(d.Bytes())
			a.Entries[i] = l
		}
	}
	if err := d.Finish(); err != nil {
		return 0, "", nil, fmt.Errorf("%w: request: %v", errFrame, err)
	}
	return id, group, a, nil
}

// encodeReply encodes raft's answer to request id.
func encodeReply(id uint64, r *raft.AppendEntriesResponse) []byte {
	b := startFrame(kindReply, id, 48+len(r.ID)+len(r.Addr))
	b = append(b, statusOK)
	b = appendHeader(b, &r.RPCHeader)
	b = binary.AppendUvarint(b, r.Term)
	b = binary.AppendUvarint(b, r.LastLog)
	var flags byte
	if r.Success {
		flags |= flagSuccess
	}
	if r.NoRetryBackoff {
		flags |= flagNoRetryBackoff
	}
	return finishFrame(append(b, flags))
}

// encodeErrorReply encodes a failed request id.
func encodeErrorReply(id uint64, msg string) []byte {
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen]
	}
	b := startFrame(kindReply, id, 1+binary.MaxVarintLen64+len(msg))
	b = append(b, statusError)
	return finishFrame(wire.AppendText(b, msg))
}

// decodeReply decodes a reply body (after its kind byte) into r; a failed
// request is a non-nil remote error.
func decodeReply(body []byte, r *raft.AppendEntriesResponse) (id uint64, remote error, err error) {
	d := wire.NewDecoder(body)
	id = d.Uvarint()
	switch status := d.Byte(); status {
	case statusOK:
		*r = raft.AppendEntriesResponse{RPCHeader: readHeader(d)}
		r.Term = d.Uvarint()
		r.LastLog = d.Uvarint()
		flags := d.Byte()
		r.Success = flags&flagSuccess != 0
		r.NoRetryBackoff = flags&flagNoRetryBackoff != 0
	case statusError:
		msg := d.Bytes()
		if len(msg) > maxErrorLen {
			d.Fail("error message too long")
		}
		remote = errors.New(string(msg))
	default:
		d.Fail(fmt.Sprintf("unknown status %d", status))
	}
	if err := d.Finish(); err != nil {
		return 0, nil, fmt.Errorf("%w: reply: %v", errFrame, err)
	}
	return id, remote, nil
}
