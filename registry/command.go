package registry

import (
	"encoding/binary"
	"fmt"

	"github.com/raftkv/raftkv/internal/wire"
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
	// Authentication state (auth.go): roles and tokens. 5..9 are the
	// fsm's (see below), so these start at 10.
	CommandPutRole     CommandType = 10
	CommandDeleteRole  CommandType = 11
	CommandPutToken    CommandType = 12
	CommandDeleteToken CommandType = 13
	// CommandRegisterNode is UpsertNode carrying the node's incarnation.
	// EncodeUpsertNode writes it only for a node that has one, so a
	// registry entry an older raftkv can read stays in the old layout.
	CommandRegisterNode CommandType = 14
)

// The two state machines numbered their commands independently, so types
// 1..4 mean one thing here and another in a shard (fsm.CommandPut..
// fsm.CommandTxn). The fsm's transaction commands took 5..9, which the
// registry never had: an entry of one of those types is a shard command in
// the wrong log and is refused (ErrShardCommand) rather than taken for a
// command from a newer raftkv. New commands of either machine take the next
// number free in both (the auth commands took 10..13, RegisterNode 14; the fsm's prefix delete and leases 15..18), and each
// package lists the other's.
const (
	firstShardOnly = 5 // fsm.CommandTxn + 1 .. fsm.CommandTxnGC
	lastShardOnly  = 9
	// fsm.CommandDeletePrefix .. fsm.CommandLeasePut
	firstShardOnly2 = 15
	lastShardOnly2  = 18
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
	case CommandPutRole:
		return "put-role"
	case CommandDeleteRole:
		return "delete-role"
	case CommandPutToken:
		return "put-token"
	case CommandDeleteToken:
		return "delete-token"
	case CommandRegisterNode:
		return "register-node"
	}
	return fmt.Sprintf("CommandType(%d)", uint8(t))
}

// Command is the decoded form of a registry log entry.
type Command struct {
	Type      CommandType
	ClusterID string // Init
	Shards    int64  // Init; range-checked by Apply, not by Decode
	Node      Node   // UpsertNode; RemoveNode uses only Node.ID
	Role      Role   // PutRole; DeleteRole uses only Role.Name
	Token     Token  // PutToken; DeleteToken uses only Token.ID
}

// Envelope: [version][type][payload]. Strings are uvarint length + bytes;
// the shard count is a zigzag varint so that a negative count survives
// the trip and is refused by Apply rather than silently changed.
//
//	Init:       cluster id, shards
//	UpsertNode: id, http addr, raft addr
//	RegisterNode: id, http addr, raft addr, incarnation
//	RemoveNode: id
//	Noop:       empty
//	PutRole, PutToken: see auth.go; DeleteRole: name; DeleteToken: id

// EncodeInit returns the entry that fixes the cluster id and shard count.
func EncodeInit(clusterID string, shards int) []byte {
	b := []byte{CommandVersion, byte(CommandInit)}
	b = appendString(b, clusterID)
	return binary.AppendVarint(b, int64(shards))
}

// EncodeUpsertNode returns the entry that adds a node or updates its
// addresses and incarnation (RegisterNode when it has one, UpsertNode,
// which keeps the incarnation recorded, when it has none).
func EncodeUpsertNode(n Node) []byte {
	t := CommandUpsertNode
	if n.Incarnation != "" {
		t = CommandRegisterNode
	}
	b := []byte{CommandVersion, byte(t)}
	b = appendString(b, n.ID)
	b = appendString(b, n.HTTPAddr)
	b = appendString(b, n.RaftAddr)
	if t == CommandRegisterNode {
		b = appendString(b, n.Incarnation)
	}
	return b
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
// ErrUnknownVersion or ErrUnknownCommand (an entry from a newer raftkv),
// ErrShardCommand, or ErrMalformed (including version 0 and type 0, which
// were never assigned).
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return Command{}, fmt.Errorf("%w: %d-byte entry", ErrMalformed, len(b))
	}
	switch {
	case b[0] == 0:
		return Command{}, fmt.Errorf("%w: envelope version 0", ErrMalformed)
	case b[0] != CommandVersion:
		return Command{}, fmt.Errorf("%w: %d", ErrUnknownVersion, b[0])
	case b[1] == 0:
		return Command{}, fmt.Errorf("%w: command type 0 is never assigned", ErrMalformed)
	case b[1] >= firstShardOnly && b[1] <= lastShardOnly, b[1] >= firstShardOnly2 && b[1] <= lastShardOnly2:
		return Command{}, fmt.Errorf("%w: type %d", ErrShardCommand, b[1])
	}
	c := Command{Type: CommandType(b[1])}
	d := wire.NewDecoder(b[2:])
	switch c.Type {
	case CommandInit:
		c.ClusterID = d.Text()
		c.Shards = d.Varint()
	case CommandUpsertNode:
		c.Node = Node{ID: d.Text(), HTTPAddr: d.Text(), RaftAddr: d.Text()}
	case CommandRegisterNode:
		c.Node = Node{ID: d.Text(), HTTPAddr: d.Text(), RaftAddr: d.Text(), Incarnation: d.Text()}
		if c.Node.Incarnation == "" && d.Err() == nil {
			d.Fail("register-node without an incarnation")
		}
	case CommandRemoveNode:
		c.Node.ID = d.Text()
	case CommandNoop:
	case CommandPutRole:
		c.Role = decodeRole(d)
	case CommandDeleteRole:
		c.Role.Name = d.Text()
	case CommandPutToken:
		c.Token = decodeToken(d)
	case CommandDeleteToken:
		c.Token.ID = d.Text()
	default:
		return Command{}, fmt.Errorf("%w: %d", ErrUnknownCommand, b[1])
	}
	if err := d.Finish(); err != nil {
		return Command{}, fmt.Errorf("%w: %v: %v", ErrMalformed, c.Type, err)
	}
	return c, nil
}
