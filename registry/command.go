package registry

import (
	"encoding/binary"
	"fmt"
)

// CommandVersion is the envelope version written by the Encode functions.
const CommandVersion = 1

// CommandType tags the payload of a registry command. Values are persisted
// in the meta group's log and never reused.
type CommandType uint8

// Registry command types.
const (
	CommandInit       CommandType = 1
	CommandUpsertNode CommandType = 2
	CommandRemoveNode CommandType = 3
	// CommandNoop changes nothing but advances AppliedIndex; raft's own
	// LogNoop/LogBarrier entries never reach the FSM (see fsm.CommandNoop).
	CommandNoop CommandType = 4
)

func (t CommandType) String() string {
	switch t {
	case CommandInit:
		return "init"
	case CommandUpsertNode:
		return "upsert-node"
	case CommandRemoveNode:
		return "remove-node"
	case CommandNoop:
		return "noop"
	}
	return fmt.Sprintf("CommandType(%d)", uint8(t))
}

// Command is the decoded form of a registry log entry.
type Command struct {
	Type      CommandType
	ClusterID string // Init
	Shards    int64  // Init; range-checked by Apply, not by Decode
	Node      Node   // UpsertNode; RemoveNode uses only Node.ID
}

// Envelope: [version][type][payload]. Strings are uvarint length + bytes;
// the shard count is a zigzag varint so that a negative count survives
// the trip and is refused by Apply rather than silently changed.
//
//	Init:       cluster id, shards
//	UpsertNode: id, http addr, raft addr
//	RemoveNode: id
//	Noop:       empty

// EncodeInit returns the entry that fixes the cluster id and shard count.
func EncodeInit(clusterID string, shards int) []byte {
	b := []byte{CommandVersion, byte(CommandInit)}
	b = appendString(b, clusterID)
	return binary.AppendVarint(b, int64(shards))
}

// EncodeUpsertNode returns the entry that adds a node or updates its
// addresses.
func EncodeUpsertNode(n Node) []byte {
	b := []byte{CommandVersion, byte(CommandUpsertNode)}
	b = appendString(b, n.ID)
	b = appendString(b, n.HTTPAddr)
	return appendString(b, n.RaftAddr)
}

// EncodeRemoveNode returns the entry that drops a node from the registry.
func EncodeRemoveNode(id string) []byte {
	return appendString([]byte{CommandVersion, byte(CommandRemoveNode)}, id)
}

// EncodeNoop returns an entry that changes nothing; a new leader proposes
// it so read-index waits have an index the FSM will report.
func EncodeNoop() []byte { return []byte{CommandVersion, byte(CommandNoop)} }

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decode parses a registry log entry. It never panics; failures wrap
// ErrUnknownVersion, ErrUnknownCommand or ErrMalformed.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return Command{}, fmt.Errorf("%w: %d-byte entry", ErrMalformed, len(b))
	}
	if b[0] != CommandVersion {
		return Command{}, fmt.Errorf("%w: %d", ErrUnknownVersion, b[0])
	}
	c := Command{Type: CommandType(b[1])}
	d := decoder{b: b[2:]}
	switch c.Type {
	case CommandInit:
		c.ClusterID = d.string()
		c.Shards = d.varint()
	case CommandUpsertNode:
		c.Node = Node{ID: d.string(), HTTPAddr: d.string(), RaftAddr: d.string()}
	case CommandRemoveNode:
		c.Node.ID = d.string()
	case CommandNoop:
	default:
		return Command{}, fmt.Errorf("%w: %d", ErrUnknownCommand, b[1])
	}
	if err := d.finish(); err != nil {
		return Command{}, fmt.Errorf("%w: %v: %v", ErrMalformed, c.Type, err)
	}
	return c, nil
}

// decoder reads fields from a byte slice, remembering the first problem so
// callers check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s at %d bytes from the end", msg, len(d.b))
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("length past end")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return d.err
}
