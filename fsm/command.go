package fsm

import (
	"encoding/binary"
	"fmt"

	"github.com/raftkv/raftkv/internal/wire"
)

// CommandVersion is the envelope version written by the Encode functions.
// A change to any payload layout needs a new version, and Decode must keep
// reading every older version so that old logs replay after an upgrade.
const CommandVersion = 1

// CommandType tags the payload inside a command envelope. Values are
// persisted in the raft log, so they are never reused or renumbered.
type CommandType uint8

// Command types. The transaction commands (4..9) share one payload layout,
// TxnCmd. 10..14 are the registry's (the auth commands registry.CommandPutRole
// .. CommandDeleteToken, then CommandRegisterNode), which a shard refuses as
// malformed; numbers from 15 up are free in both. 16..18 are the leases'
// (lease.go), 19 is reserved, 20..23 are idempotency's (idempotency.go).
const (
	CommandPut    CommandType = 1
	CommandDelete CommandType = 2
	// CommandNoop changes nothing but is seen by the FSM, so AppliedIndex
	// reaches its index. raft's own LogNoop and LogBarrier entries never
	// reach the FSM; a new leader proposes this instead so that read-index
	// waits have an index the FSM will actually report.
	CommandNoop CommandType = 3
	// CommandTxn is a whole transaction inside one shard (TxnCmd.Body),
	// checked and applied atomically.
	CommandTxn CommandType = 4
	// CommandTxnPrepare locks the keys of this shard's part of a cross-shard
	// transaction (ID, Primary, Participants, Now, Deadline, Body) and
	// stages both branches; on the primary it also creates the record.
	CommandTxnPrepare CommandType = 5
	// CommandTxnDecide moves the record pending → committed|aborted (ID,
	// Outcome, Now, Participants) and resolves the primary's own part.
	CommandTxnDecide CommandType = 6
	// CommandTxnResolve applies or drops a participant's staged part and
	// releases its locks (ID, Outcome, Now).
	CommandTxnResolve CommandType = 7
	// CommandTxnResolved marks a decided record as resolved everywhere (ID).
	CommandTxnResolved CommandType = 8
	// CommandTxnGC forgets resolved records and finished-transaction
	// markers older than Before (Now, Before).
	CommandTxnGC CommandType = 9
	// CommandDeletePrefix deletes every key of this shard that starts
	// with Key (the prefix; empty: every key), atomically: if any of them
	// is locked by a transaction, none is deleted (ErrLocked). Same layout
	// as Delete, with CondNone.
	CommandDeletePrefix CommandType = 15
	// CommandLeaseGrant creates a lease on this shard (LeaseCmd ID, TTL).
	CommandLeaseGrant CommandType = 16
	// CommandLeaseRevoke is one phase of a lease's revocation on this
	// shard (LeaseCmd ID, Phase, Term): prepare locks its keys, commit
	// deletes them and the lease (lease.go).
	CommandLeaseRevoke CommandType = 17
	// CommandLeasePut is a Put that attaches the key to a lease (LeaseCmd
	// ID); it writes nothing if the lease is unknown or being revoked.
	CommandLeasePut CommandType = 18
	// 19 is reserved.
)

// The registry's commands numbered from 10 (registry.CommandPutRole ..
// registry.CommandRegisterNode); a test keeps these in step.
const (
	firstRegistryOnly CommandType = 10
	lastRegistryOnly  CommandType = 14
)

func (t CommandType) String() string {
	switch t {
	case CommandPut:
		return "put"
	case CommandDelete:
		return "delete"
	case CommandNoop:
		return "noop"
	case CommandTxn:
		return "txn"
	case CommandTxnPrepare:
		return "txn-prepare"
	case CommandTxnDecide:
		return "txn-decide"
	case CommandTxnResolve:
		return "txn-resolve"
	case CommandTxnResolved:
		return "txn-resolved"
	case CommandTxnGC:
		return "txn-gc"
	case CommandDeletePrefix:
		return "delete-prefix"
	case CommandLeaseGrant:
		return "lease-grant"
	case CommandLeaseRevoke:
		return "lease-revoke"
	case CommandLeasePut:
		return "lease-put"
	case CommandIdempotent:
		return "idempotent"
	case CommandIdempotentDecide:
		return "idempotent-decide"
	case CommandIdempotencyGC:
		return "idempotency-gc"
	default:
		return fmt.Sprintf("CommandType(%d)", uint8(t))
	}
}

// CondKind selects the precondition checked before a write.
type CondKind uint8

// Condition kinds. Values are persisted in the raft log.
const (
	// CondNone writes unconditionally.
	CondNone CondKind = 0
	// CondRevision writes only if the key exists and its ModRevision equals
	// Condition.Revision (HTTP If-Match). A missing key never matches.
	CondRevision CondKind = 1
	// CondAbsent writes only if the key does not exist (If-None-Match: *).
	CondAbsent CondKind = 2
)

func (k CondKind) valid() bool { return k <= CondAbsent }

// Condition is a write precondition.
type Condition struct {
	Kind     CondKind
	Revision uint64 // used only with CondRevision
}

// Command is the decoded form of a log entry.
type Command struct {
	Type  CommandType
	Key   string
	Value []byte // Put only; aliases the buffer given to Decode
	Cond  Condition
	Txn   *TxnCmd // transaction commands only; slices alias the buffer given to Decode

	// Idem is the payload of the idempotency commands (idempotency.go);
	// it aliases the buffer given to Decode too.
	Idem *IdemCmd

	// Lease is the payload of the lease commands (lease.go).
	Lease *LeaseCmd
}

func (t CommandType) isTxn() bool { return t >= CommandTxn && t <= CommandTxnGC }

// Envelope layout, version 1:
//
//	byte 0   envelope version
//	byte 1   command type
//	payload  Put, Delete: cond kind (1 byte), cond revision (uvarint),
//	         key length (uvarint), key, then for Put:
//	         value length (uvarint), value
//	         Noop: empty
//
// Lengths are explicit and trailing bytes are refused so that every byte of
// an entry is accounted for.

// EncodePut returns the log entry for a Put. It panics if cond.Kind is not
// one of the defined kinds: that is a programming error, and panicking on
// the proposer beats replicating an entry every replica must reject.
func EncodePut(key string, value []byte, cond Condition) []byte {
	b := make([]byte, 0, 2+1+binary.MaxVarintLen64*3+len(key)+len(value))
	b = appendHead(b, CommandPut, key, cond)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

// EncodeDelete returns the log entry for a Delete. It panics on an unknown
// cond.Kind, like EncodePut.
func EncodeDelete(key string, cond Condition) []byte {
	b := make([]byte, 0, 2+1+binary.MaxVarintLen64*2+len(key))
	return appendHead(b, CommandDelete, key, cond)
}

// EncodeDeletePrefix returns the log entry that deletes every key of the
// shard under prefix.
func EncodeDeletePrefix(prefix string) []byte {
	b := make([]byte, 0, 2+1+1+binary.MaxVarintLen64+len(prefix))
	return appendHead(b, CommandDeletePrefix, prefix, Condition{})
}

// EncodeNoop returns the log entry for a Noop.
func EncodeNoop() []byte { return []byte{CommandVersion, byte(CommandNoop)} }

// Encode returns the log entry for c.
func Encode(c Command) ([]byte, error) {
	switch c.Type {
	case CommandNoop:
		return EncodeNoop(), nil
	case CommandPut:
		return EncodePut(c.Key, c.Value, c.Cond), nil
	case CommandDelete:
		return EncodeDelete(c.Key, c.Cond), nil
	case CommandDeletePrefix:
		return EncodeDeletePrefix(c.Key), nil
	case CommandLeaseGrant, CommandLeaseRevoke, CommandLeasePut:
		if c.Lease == nil {
			break
		}
		switch c.Type {
		case CommandLeaseGrant:
			return EncodeLeaseGrant(c.Lease.ID, c.Lease.TTL), nil
		case CommandLeaseRevoke:
			return EncodeLeaseRevoke(c.Lease.ID, c.Lease.Phase, c.Lease.Term), nil
		}
		return EncodeLeasePut(c.Key, c.Value, c.Cond, c.Lease.ID), nil
	}
	if c.Type.isTxn() && c.Txn != nil {
		return EncodeTxn(c.Type, *c.Txn), nil
	}
	return nil, fmt.Errorf("%w: %v", ErrUnknownCommand, c.Type)
}

func appendHead(b []byte, t CommandType, key string, cond Condition) []byte {
	if !cond.Kind.valid() {
		panic(fmt.Sprintf("fsm: encoding %v with undefined condition kind %d", t, cond.Kind))
	}
	b = append(b, CommandVersion, byte(t), byte(cond.Kind))
	b = binary.AppendUvarint(b, cond.Revision)
	b = binary.AppendUvarint(b, uint64(len(key)))
	return append(b, key...)
}

// Decode parses a log entry. It never panics; an unknown version or type
// or a malformed payload yields an error wrapping ErrUnknownVersion,
// ErrUnknownCommand or ErrMalformed. Version 0 and type 0 were never
// assigned, so they are malformed rather than unknown.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return Command{}, fmt.Errorf("%w: %d-byte entry", ErrMalformed, len(b))
	}
	switch {
	case b[0] == 0:
		// No build ever wrote version 0: this is damage, not skew.
		return Command{}, fmt.Errorf("%w: envelope version 0", ErrMalformed)
	case b[0] != CommandVersion:
		return Command{}, fmt.Errorf("%w: %d", ErrUnknownVersion, b[0])
	}
	c := Command{Type: CommandType(b[1])}
	d := wire.NewDecoder(b[2:])
	switch {
	case c.Type.isTxn():
		t, err := decodeTxn(d)
		if err != nil {
			return Command{}, fmt.Errorf("%w: %v: %v", ErrMalformed, c.Type, err)
		}
		c.Txn = t
		return c, nil
	case c.Type.isIdem():
		ic, err := decodeIdem(c.Type, d)
		if err != nil {
			return Command{}, err
		}
		c.Idem = ic
		return c, nil
	case c.Type.isLease():
		if err := decodeLease(&c, d); err != nil {
			return Command{}, err
		}
		return c, nil
	case c.Type == CommandPut, c.Type == CommandDelete, c.Type == CommandDeletePrefix:
	case c.Type == CommandNoop:
		if err := d.Finish(); err != nil {
			return Command{}, fmt.Errorf("%w: noop: %v", ErrMalformed, err)
		}
		return c, nil
	case c.Type == 0:
		return Command{}, fmt.Errorf("%w: command type 0 is never assigned", ErrMalformed)
	case c.Type >= firstRegistryOnly && c.Type <= lastRegistryOnly:
		// The registry's auth commands: a meta-group entry in a shard's
		// log, refused like any malformed entry rather than taken for one
		// from a newer raftkv.
		return Command{}, fmt.Errorf("%w: type %d is a registry command", ErrMalformed, b[1])
	default:
		return Command{}, fmt.Errorf("%w: %d", ErrUnknownCommand, b[1])
	}
	c.Cond.Kind = CondKind(d.Byte())
	c.Cond.Revision = d.Uvarint()
	c.Key = string(d.Bytes())
	if c.Type == CommandPut {
		c.Value = d.Bytes()
	}
	if err := d.Finish(); err != nil {
		return Command{}, fmt.Errorf("%w: %v: %v", ErrMalformed, c.Type, err)
	}
	if !c.Cond.Kind.valid() {
		return Command{}, fmt.Errorf("%w: condition kind %d", ErrMalformed, c.Cond.Kind)
	}
	return c, nil
}
