package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// Transaction errors, carried in Result.Err. Match them with errors.Is.
var (
	// ErrLocked: a key the command touches is locked by a prepared
	// transaction (Result.LockedBy names it). Nothing changed.
	ErrLocked = errors.New("fsm: key locked by a transaction")

	// ErrTxnFinished: a prepare arrived for a transaction this shard has
	// already resolved or aborted, or after the prepare deadline. The shard
	// votes no and nothing changes.
	ErrTxnFinished = errors.New("fsm: transaction already finished")

	// ErrNoRecord: a commit decision named a transaction with no record on
	// this shard. Nothing changed.
	ErrNoRecord = errors.New("fsm: no such transaction record")
)

// CompareTarget selects what a Compare looks at.
type CompareTarget uint8

// Compare targets. Values are persisted in the raft log.
const (
	TargetValue    CompareTarget = 1 // the value's bytes
	TargetVersion  CompareTarget = 2 // Version; 0 when the key is absent
	TargetRevision CompareTarget = 3 // ModRevision; 0 when the key is absent
)

// CompareOp is a comparison operator.
type CompareOp uint8

// Comparison operators. Values are persisted in the raft log.
const (
	OpEqual    CompareOp = 1
	OpNotEqual CompareOp = 2
	OpLess     CompareOp = 3
	OpGreater  CompareOp = 4
)

// Compare is one guard of a transaction: key's target op operand.
type Compare struct {
	Key    string
	Target CompareTarget
	Op     CompareOp
	Value  []byte // operand for TargetValue
	Number uint64 // operand for TargetVersion and TargetRevision
}

// OpKind is the kind of a transaction operation.
type OpKind uint8

// Operation kinds. Values are persisted in the raft log.
const (
	OpGet    OpKind = 1
	OpPut    OpKind = 2
	OpDelete OpKind = 3
)

func (k OpKind) String() string {
	switch k {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one operation of a transaction branch.
type Op struct {
	Kind  OpKind
	Key   string
	Value []byte // OpPut only
}

// Txn is a transaction body, or the part of one that falls in one shard:
// if every compare holds, Success runs, else Failure.
type Txn struct {
	Compares []Compare
	Success  []Op
	Failure  []Op
}

// Keys returns every key the transaction compares, reads or writes, sorted
// and without duplicates: the keys it locks.
func (t *Txn) Keys() []string {
	var keys []string
	for _, c := range t.Compares {
		keys = append(keys, c.Key)
	}
	for _, o := range t.Success {
		keys = append(keys, o.Key)
	}
	for _, o := range t.Failure {
		keys = append(keys, o.Key)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// Outcome is a transaction's decision.
type Outcome uint8

// Outcomes. Values are persisted in the raft log and in checkpoints.
const (
	// OutcomeAborted: nothing is applied anywhere.
	OutcomeAborted Outcome = 1
	// OutcomeSuccess: committed; every compare held, the success branch
	// is applied on every participant.
	OutcomeSuccess Outcome = 2
	// OutcomeFailure: committed; some compare failed, the failure branch
	// is applied on every participant.
	OutcomeFailure Outcome = 3
)

func (o Outcome) valid() bool { return o >= OutcomeAborted && o <= OutcomeFailure }

// Committed reports whether o applies a branch.
func (o Outcome) Committed() bool { return o == OutcomeSuccess || o == OutcomeFailure }

// TxnState is the state of a transaction record. The only transitions are
// Pending → Committed and Pending → Aborted, each made by one Decide entry
// on the primary shard; a record may also be created directly as Aborted
// when recovery finds no record for a transaction it has to stop.
type TxnState uint8

// Record states. Values are persisted in checkpoints.
const (
	StatePending   TxnState = 1
	StateCommitted TxnState = 2
	StateAborted   TxnState = 3
)

func (s TxnState) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateCommitted:
		return "committed"
	case StateAborted:
		return "aborted"
	}
	return fmt.Sprintf("TxnState(%d)", uint8(s))
}

// Record is the replicated transaction record kept by the primary shard of
// a cross-shard transaction. Times are Unix nanoseconds taken from the
// leader that proposed the entry.
type Record struct {
	ID           string
	State        TxnState
	Succeeded    bool     // with StateCommitted: the success branch was chosen
	Participants []string // shard groups, primary first
	StartedAt    int64
	DecidedAt    int64
	// Resolved is set once every participant has applied the decision;
	// only then may the record be garbage-collected.
	Resolved bool
}

// Outcome returns the decision recorded, or 0 while pending.
func (r Record) Outcome() Outcome {
	switch {
	case r.State == StateAborted:
		return OutcomeAborted
	case r.State == StateCommitted && r.Succeeded:
		return OutcomeSuccess
	case r.State == StateCommitted:
		return OutcomeFailure
	}
	return 0
}

func (r Record) clone() Record {
	r.Participants = slices.Clone(r.Participants)
	return r
}

// Staged is a participant's prepared part of a transaction: its locks are
// on Part.Keys() until the transaction is resolved here.
type Staged struct {
	ID           string
	Primary      string   // group holding the record
	Participants []string // every participant group, primary first
	PreparedAt   int64    // leader time of the prepare entry (Unix ns)
	Part         Txn
}

// TxnCmd is the payload of every transaction command. Each command type
// uses the fields its comment in CommandType names; the others are zero.
type TxnCmd struct {
	ID           string
	Primary      string
	Participants []string
	Now          int64 // leader time when proposed (Unix ns); Apply never reads a clock
	Deadline     int64 // prepare: refuse when Now is past it
	Outcome      Outcome
	Before       int64 // gc: forget finished transactions decided before this time
	Body         Txn
}

// OpResult is the state of one operation's key.
//
// For a get, and in a prepare's answer, KV and Found describe the key
// before the transaction. For a put, KV is the key as written and Found
// says whether it existed before; for a delete, KV is the removed key.
type OpResult struct {
	KV    KV
	Found bool
}

// TxnResult is the transaction part of a Result.
//
// Txn: Succeeded says which branch ran, Results are that branch's, in op
// order. Prepare: Succeeded says whether this shard's compares held, and
// Results hold the pre-transaction state of the success ops followed by the
// failure ops. Decide and record lookups: Record is the record afterwards.
type TxnResult struct {
	Succeeded bool
	Results   []OpResult
	Record    *Record
}

// evalCompare reports whether c holds against the key's current state.
func evalCompare(c Compare, cur entry, found bool) bool {
	if c.Target == TargetValue {
		if !found {
			return false
		}
		return cmpHolds(c.Op, bytes.Compare(cur.value, c.Value))
	}
	var have uint64
	if found {
		have = cur.version
		if c.Target == TargetRevision {
			have = cur.mod
		}
	}
	switch {
	case have < c.Number:
		return cmpHolds(c.Op, -1)
	case have > c.Number:
		return cmpHolds(c.Op, 1)
	}
	return cmpHolds(c.Op, 0)
}

func cmpHolds(op CompareOp, sign int) bool {
	switch op {
	case OpEqual:
		return sign == 0
	case OpNotEqual:
		return sign != 0
	case OpLess:
		return sign < 0
	case OpGreater:
		return sign > 0
	}
	return false
}

// validTxn checks the enumerations of a decoded body.
func validTxn(t *Txn) error {
	for _, c := range t.Compares {
		if c.Target < TargetValue || c.Target > TargetRevision || c.Op < OpEqual || c.Op > OpGreater {
			return fmt.Errorf("compare on %q: target %d op %d", c.Key, c.Target, c.Op)
		}
	}
	for _, ops := range [][]Op{t.Success, t.Failure} {
		for _, o := range ops {
			if o.Kind < OpGet || o.Kind > OpDelete {
				return fmt.Errorf("op on %q: kind %d", o.Key, o.Kind)
			}
		}
	}
	return nil
}
