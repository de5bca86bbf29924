package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/tidwall/btree"

	"github.com/raftkv/raftkv/internal/wire"
)

// Exactly-once writes (Raft thesis §6.3): the idempotency table.
//
// A client names a logical write with an idempotency key. The write is
// proposed wrapped in a CommandIdempotent entry that carries the key, a
// hash of the request and the proposing leader's time. The first entry
// with a key applies the wrapped command and remembers its result under
// the key; every later entry with that key and the same hash applies
// nothing and returns the remembered result (Result.Replayed), and one
// with another hash is refused with ErrIdempotencyMismatch. The table is
// part of the replicated state (checkpoint tag tagIdempotency) and is
// forgotten only through the log: a CommandIdempotencyGC entry carries a
// cutoff in leader time, and Apply compares it with the times stored from
// the entries. Apply never reads a clock.
//
// A cross-shard transaction is decided by a CommandIdempotentDecide entry
// on its primary shard: the decide of one attempt of the coordinator,
// with the reply the client gets if it commits. If the key is already
// known there, the attempt is aborted instead (whatever it would have
// decided) and the remembered reply returned, so a second coordinator
// running the same request never commits it twice.

// Idempotency command types: 20..23 belong to idempotency (23 is not
// assigned yet).
const (
	// CommandIdempotent applies Inner (a Put, Delete or single-shard Txn
	// entry) once per Key (IdemCmd: Key, Hash, Now, Inner).
	CommandIdempotent CommandType = 20
	// CommandIdempotentDecide decides a cross-shard transaction attempt
	// once per Key (IdemCmd: Key, Hash, Now, Reply, Inner: a TxnDecide
	// entry).
	CommandIdempotentDecide CommandType = 21
	// CommandIdempotencyGC forgets the keys remembered from entries whose
	// Now is before Before (IdemCmd: Now, Before).
	CommandIdempotencyGC CommandType = 22
)

// MaxIdempotencyKeyBytes bounds an idempotency key as the state machine
// stores it (the client's key with the caller's scope in front); the
// cluster's limit on the client's part is lower.
const MaxIdempotencyKeyBytes = 1024

// IdempotencyHashBytes is the length of a request hash (SHA-256).
const IdempotencyHashBytes = 32

// ErrIdempotencyMismatch is Result.Err when an idempotency key is already
// remembered for a different request (another hash). Nothing changed; an
// attempt of a cross-shard transaction is aborted.
var ErrIdempotencyMismatch = errors.New("fsm: idempotency key already used for a different request")

// IdemCmd is the payload of the idempotency commands. Each command type
// uses the fields its comment names; the others are empty.
type IdemCmd struct {
	Key    string
	Hash   []byte // aliases the buffer given to Decode
	Now    int64  // leader time (Unix ns) when proposed
	Before int64  // gc: forget keys remembered from entries before this time
	Reply  []byte // decide: the reply remembered if the attempt commits
	Inner  []byte // the wrapped entry, as the Encode functions write it
	// InnerCmd is Inner decoded (Decode fills it).
	InnerCmd Command
}

func (t CommandType) isIdem() bool { return t >= CommandIdempotent && t <= CommandIdempotencyGC }

// Payload layout of types 20..22 (envelope version 1): key (string), hash
// (bytes), now, before (uvarints), reply (bytes), inner (bytes). Every
// type writes every field.

// EncodeIdempotent wraps inner (an entry from EncodePut, EncodeDelete or
// EncodeTxn(CommandTxn, ...)) so that it applies once per key.
func EncodeIdempotent(key string, hash []byte, now int64, inner []byte) []byte {
	return encodeIdem(CommandIdempotent, IdemCmd{Key: key, Hash: hash, Now: now, Inner: inner})
}

// EncodeIdempotentDecide wraps a decide entry (EncodeTxn(CommandTxnDecide,
// ...)) of one attempt of a cross-shard transaction: reply is remembered
// under key if the attempt commits.
func EncodeIdempotentDecide(key string, hash []byte, now int64, reply, decide []byte) []byte {
	return encodeIdem(CommandIdempotentDecide, IdemCmd{Key: key, Hash: hash, Now: now, Reply: reply, Inner: decide})
}

// EncodeIdempotencyGC returns the entry that forgets every key remembered
// from an entry stamped before before.
func EncodeIdempotencyGC(now, before int64) []byte {
	return encodeIdem(CommandIdempotencyGC, IdemCmd{Now: now, Before: before})
}

func encodeIdem(t CommandType, c IdemCmd) []byte {
	b := make([]byte, 0, 2+len(c.Key)+len(c.Hash)+len(c.Reply)+len(c.Inner)+6*binary.MaxVarintLen64)
	b = append(b, CommandVersion, byte(t))
	b = appendString(b, c.Key)
	b = appendBytes(b, c.Hash)
	b = binary.AppendUvarint(b, uint64(max(c.Now, 0)))
	b = binary.AppendUvarint(b, uint64(max(c.Before, 0)))
	b = appendBytes(b, c.Reply)
	return appendBytes(b, c.Inner)
}

// decodeIdem parses the payload and the wrapped entry. A wrapped entry of
// a version or type this build does not know is reported as such (the
// node halts, see Malformed entries in DESIGN.md), not as malformed.
func decodeIdem(t CommandType, d *wire.Decoder) (*IdemCmd, error) {
	c := &IdemCmd{Key: string(d.Bytes()), Hash: d.Bytes()}
	c.Now = readInt64(d)
	c.Before = readInt64(d)
	c.Reply = d.Bytes()
	c.Inner = d.Bytes()
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("%w: %v: %v", ErrMalformed, t, err)
	}
	if t == CommandIdempotencyGC {
		if len(c.Inner) != 0 {
			return nil, fmt.Errorf("%w: %v wraps an entry", ErrMalformed, t)
		}
		return c, nil
	}
	if len(c.Inner) >= 2 && CommandType(c.Inner[1]).isIdem() {
		return nil, fmt.Errorf("%w: %v wraps another idempotency entry", ErrMalformed, t)
	}
	inner, err := Decode(c.Inner)
	if err != nil {
		return nil, fmt.Errorf("wrapped in %v: %w", t, err)
	}
	c.InnerCmd = inner
	return c, nil
}

// checkIdem enforces the rules of the idempotency commands.
func checkIdem(c Command) error {
	ic := c.Idem
	if c.Type == CommandIdempotencyGC {
		return nil
	}
	switch {
	case ic.Key == "" || len(ic.Key) > MaxIdempotencyKeyBytes:
		return fmt.Errorf("idempotency key of %d bytes, want 1..%d", len(ic.Key), MaxIdempotencyKeyBytes)
	case len(ic.Hash) != IdempotencyHashBytes:
		return fmt.Errorf("request hash of %d bytes, want %d", len(ic.Hash), IdempotencyHashBytes)
	}
	inner := ic.InnerCmd.Type
	switch {
	case c.Type == CommandIdempotent && inner != CommandPut && inner != CommandDelete && inner != CommandTxn && inner != CommandLeasePut:
		return fmt.Errorf("%v wraps %v; only put, delete, lease put and txn apply once", c.Type, inner)
	case c.Type == CommandIdempotent && len(ic.Reply) != 0:
		return fmt.Errorf("%v carries a reply", c.Type)
	case c.Type == CommandIdempotentDecide && inner != CommandTxnDecide:
		return fmt.Errorf("%v wraps %v, not a decide", c.Type, inner)
	}
	return checkCommand(ic.InnerCmd)
}

// idemEntry is one remembered key: the request's hash, the leader time of
// the entry that stored it, that entry's index and term, the kind of the
// wrapped command and its result (encodeOutcome; for a decide, the reply).
type idemEntry struct {
	key         string
	hash        []byte
	at          int64
	index, term uint64
	kind        CommandType
	outcome     []byte
}

func newIdemTree() *btree.BTreeG[idemEntry] {
	return btree.NewBTreeGOptions(func(a, b idemEntry) bool { return a.key < b.key }, btree.Options{NoLocks: true})
}

// applyIdem applies an idempotency command committed at idx in term.
func applyIdem(s *state, idx, term uint64, c Command) *Result {
	ic := c.Idem
	if c.Type == CommandIdempotencyGC {
		return applyIdemGC(s, ic.Before)
	}
	if e, ok := s.idem.Get(idemEntry{key: ic.Key}); ok {
		var r *Result
		if bytes.Equal(e.hash, ic.Hash) {
			r = replay(e)
		} else {
			r = &Result{Err: fmt.Errorf("%w (first used at index %d)", ErrIdempotencyMismatch, e.index)}
		}
		if c.Type == CommandIdempotentDecide {
			// This attempt must not commit: abort it (a record decided
			// before keeps its decision) and hand the coordinator the
			// record to resolve.
			abort := *ic.InnerCmd.Txn
			abort.Outcome = OutcomeAborted
			if d := applyDecide(s, idx, &abort); d.Txn != nil {
				r.Txn = d.Txn
			}
		}
		return r
	}
	inner := ic.InnerCmd
	var r *Result
	if c.Type == CommandIdempotentDecide {
		r = applyDecide(s, idx, inner.Txn)
	} else {
		r = applyCommand(s, idx, inner)
	}
	if out, ok := outcomeToKeep(c.Type, inner, ic, r); ok {
		s.idem.Set(idemEntry{key: ic.Key, hash: bytes.Clone(ic.Hash), at: ic.Now, index: idx, term: term,
			kind: inner.Type, outcome: out})
	}
	return r
}

// outcomeToKeep returns what to remember of r, the first result of a
// wrapped command. A result that left nothing decided is not kept, so a
// retry applies the command afresh: a key locked by a transaction (the
// cluster settles the lock and proposes the entry again) and a decide
// whose attempt was aborted (the coordinator tries a new attempt). A
// failed precondition is kept: it is the write's answer.
func outcomeToKeep(t CommandType, inner Command, ic *IdemCmd, r *Result) ([]byte, bool) {
	switch {
	case t == CommandIdempotentDecide:
		if r.Err != nil || r.Txn == nil || r.Txn.Record == nil || r.Txn.Record.State != StateCommitted {
			return nil, false
		}
		return bytes.Clone(ic.Reply), true
	case r.Err != nil && !errors.Is(r.Err, ErrPrecondition):
		return nil, false
	}
	return encodeOutcome(inner.Type, r), true
}

// replay rebuilds the remembered result of e; its Index and Term are those
// of the entry that applied the write.
func replay(e idemEntry) *Result {
	r, err := decodeOutcome(e.kind, e.outcome)
	if err != nil {
		// Restore and Apply only ever store outcomes that decode.
		panic(fmt.Sprintf("fsm: remembered outcome of %q does not decode: %v", e.key, err))
	}
	r.Replayed, r.Index, r.Term = true, e.index, e.term
	return r
}

// applyIdemGC forgets every key remembered from an entry before before.
func applyIdemGC(s *state, before int64) *Result {
	var old []idemEntry
	s.idem.Scan(func(e idemEntry) bool {
		if e.at < before {
			old = append(old, e)
		}
		return true
	})
	for _, e := range old {
		s.idem.Delete(e)
	}
	return &Result{Count: len(old)}
}

// Outcome encodings (what the table keeps of a first result):
//
//	put, delete  flags (1 found, 2 deleted, 4 precondition failed), key,
//	             create, mod, version: the key's revisions, never its value
//	txn          succeeded (1 byte), count, then per op: found (1 byte),
//	             key, value, create, mod, version
//	decide       the coordinator's reply, as it gave it
const (
	outcomeFound        = 1
	outcomeDeleted      = 2
	outcomePrecondition = 4
)

func encodeOutcome(t CommandType, r *Result) []byte {
	var b []byte
	switch t {
	case CommandPut, CommandDelete, CommandLeasePut:
		var flags byte
		if r.Found {
			flags |= outcomeFound
		}
		if r.Deleted {
			flags |= outcomeDeleted
		}
		if errors.Is(r.Err, ErrPrecondition) {
			flags |= outcomePrecondition
		}
		b = append(b, flags)
		b = appendRevisions(b, r.KV)
	case CommandTxn:
		b = append(b, boolByte(r.Txn.Succeeded))
		b = binary.AppendUvarint(b, uint64(len(r.Txn.Results)))
		for _, o := range r.Txn.Results {
			b = append(b, boolByte(o.Found))
			b = appendBytes(appendRevisions(b, o.KV), o.KV.Value)
		}
	}
	return b
}

func appendRevisions(b []byte, kv KV) []byte {
	b = appendString(b, kv.Key)
	b = binary.AppendUvarint(b, kv.CreateRevision)
	b = binary.AppendUvarint(b, kv.ModRevision)
	return binary.AppendUvarint(b, kv.Version)
}

func readRevisions(d *wire.Decoder) KV {
	return KV{Key: string(d.Bytes()), CreateRevision: d.Uvarint(), ModRevision: d.Uvarint(), Version: d.Uvarint()}
}

func decodeOutcome(t CommandType, b []byte) (*Result, error) {
	d := wire.NewDecoder(b)
	r := &Result{}
	switch t {
	case CommandTxnDecide:
		r.Reply = bytes.Clone(b)
		return r, nil
	case CommandPut, CommandDelete, CommandLeasePut:
		flags := d.Byte()
		if flags > outcomeFound|outcomeDeleted|outcomePrecondition {
			d.Fail("unknown outcome flags")
		}
		r.Found, r.Deleted = flags&outcomeFound != 0, flags&outcomeDeleted != 0
		if flags&outcomePrecondition != 0 {
			r.Err = ErrPrecondition
		}
		r.KV = readRevisions(d)
		r.KV.Value = []byte{}
	case CommandTxn:
		tr := &TxnResult{Succeeded: d.Byte() == 1}
		if n := d.Count(6); n > 0 {
			tr.Results = make([]OpResult, n)
			for i := range tr.Results {
				found := d.Byte() == 1
				kv := readRevisions(d)
				kv.Value = bytes.Clone(d.Bytes())
				tr.Results[i] = OpResult{KV: kv, Found: found}
			}
		}
		r.Txn = tr
	default:
		return nil, fmt.Errorf("no outcome kept for %v", t)
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return r, nil
}

// Checkpoint record of a remembered key (tag tagIdempotency): key, hash,
// at, index, term (uvarints), kind (1 byte), outcome (bytes).
func appendIdemRecord(b []byte, e idemEntry) []byte {
	b = appendString(b, e.key)
	b = appendBytes(b, e.hash)
	b = binary.AppendUvarint(b, uint64(max(e.at, 0)))
	b = binary.AppendUvarint(b, e.index)
	b = binary.AppendUvarint(b, e.term)
	b = append(b, byte(e.kind))
	return appendBytes(b, e.outcome)
}

// loadIdemRecord reads the rest of a tagIdempotency record after its key.
func loadIdemRecord(st *state, key string, d *wire.Decoder, index uint64) error {
	e := idemEntry{key: key, hash: slices.Clone(d.Bytes()), at: readInt64(d), index: d.Uvarint(), term: d.Uvarint(),
		kind: CommandType(d.Byte()), outcome: slices.Clone(d.Bytes())}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("%w: idempotency key %q: %v", ErrMalformed, key, err)
	}
	switch {
	case len(key) > MaxIdempotencyKeyBytes || len(e.hash) != IdempotencyHashBytes:
		return fmt.Errorf("%w: idempotency key %q: %d-byte key, %d-byte hash", ErrBadSnapshot, key, len(key), len(e.hash))
	case e.index == 0 || e.index > index:
		return fmt.Errorf("%w: idempotency key %q stored at index %d, checkpoint at %d", ErrBadSnapshot, key, e.index, index)
	}
	if _, err := decodeOutcome(e.kind, e.outcome); err != nil {
		return fmt.Errorf("%w: idempotency key %q: %v", ErrBadSnapshot, key, err)
	}
	st.idem.Load(e)
	return nil
}

// Remembered is what the idempotency table holds for a key.
type Remembered struct {
	Hash []byte
	// At is the leader time (Unix ns) of the entry that stored it.
	At int64
	// Result is the remembered first result (Replayed set), as a replay
	// returns it.
	Result *Result
}

// Remembered returns what the table holds for an idempotency key.
func (f *FSM) Remembered(key string) (Remembered, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, ok := f.st.idem.Get(idemEntry{key: key})
	if !ok {
		return Remembered{}, false
	}
	return Remembered{Hash: bytes.Clone(e.hash), At: e.at, Result: replay(e)}, true
}

// IdempotencySummary is the size of the idempotency table and the leader
// time of its oldest entry (0 when empty).
type IdempotencySummary struct {
	Keys   int
	Oldest int64
}

// Idempotency returns the idempotency table's summary.
func (f *FSM) Idempotency() IdempotencySummary {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := IdempotencySummary{Keys: f.st.idem.Len()}
	f.st.idem.Scan(func(e idemEntry) bool {
		if out.Oldest == 0 || e.at < out.Oldest {
			out.Oldest = e.at
		}
		return true
	})
	return out
}
