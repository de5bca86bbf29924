package fsm

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/applied"
)

// Errors returned by this package. Match them with errors.Is.
var (
	// ErrPrecondition is Result.Err when a write's Condition does not hold.
	// Nothing changed; Result.KV and Result.Found describe the current value.
	ErrPrecondition = errors.New("fsm: precondition failed")

	// ErrUnknownVersion reports a command envelope version this build does
	// not know, usually an entry written by a newer binary.
	ErrUnknownVersion = errors.New("fsm: unknown command version")

	// ErrUnknownCommand reports a command type this build does not know.
	ErrUnknownCommand = errors.New("fsm: unknown command type")

	// ErrMalformed reports a command or snapshot record whose bytes do not
	// parse.
	ErrMalformed = errors.New("fsm: malformed encoding")

	// ErrBadSnapshot reports a checkpoint that parses but cannot be this
	// FSM's state: wrong kind or group, unsorted keys, impossible revisions.
	ErrBadSnapshot = errors.New("fsm: invalid snapshot")
)

// KV is a key with its value and revisions. Revisions are raft log indexes
// of the shard's group.
type KV struct {
	Key            string
	Value          []byte
	CreateRevision uint64 // index at which the key was (re)created
	ModRevision    uint64 // index of the latest write
	Version        uint64 // 1 on creation, +1 per write
	// Lease is the lease the key is attached to (lease.go), set by Get
	// only: listings, write results and transactions leave it empty.
	Lease string
}

// Result is what Apply returns, as *Result, for every LogCommand.
//
// Found reports whether the key existed when the command was applied,
// before any change. KV is the key after a successful Put, the removed key
// after a successful Delete, and the unchanged current key (if Found) when
// Err is ErrPrecondition. When Err is ErrLocked, LockedBy names the
// transaction holding the lock. Transaction commands fill Txn.
type Result struct {
	KV       KV
	Found    bool
	Deleted  bool
	Err      error
	LockedBy string
	Txn      *TxnResult
	// Index and Term are the log entry's: the raft index the command was
	// applied at, and the term it was proposed in.
	Index, Term uint64
	// Count is how many keys a prefix delete removed (an idempotency GC:
	// how many keys it forgot).
	Count int
	// Replayed is set when an idempotency key was already remembered: this
	// is the first result (Index and Term are its entry's) and nothing was
	// applied now. A remembered put or delete carries the key's revisions
	// but not its value. Reply is a cross-shard transaction's remembered
	// reply.
	Replayed bool
	Reply    []byte
}

// FSM is the key/value state machine of one raft group (a shard). It
// implements raft.BatchingFSM. Reads are safe concurrently with Apply.
//
// Every KV returned by FSM methods or carried in a Result holds its own
// copy of the value; stored values are never handed out. A put's Result
// has no value: its KV carries the key's revisions, and the writer has
// the value it wrote.
type FSM struct {
	group   string
	applied applied.Watch

	mu   sync.RWMutex // guards st and term; Apply holds it for a whole batch
	st   state
	term uint64 // term of the last processed entry
	// limits bound st.hist, and the history Restore starts afresh.
	limits HistoryLimits
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New returns an empty FSM for the named raft group. The group name is
// written into snapshots and checked on Restore.
func New(group string) *FSM {
	f := &FSM{group: group, st: newState(group), limits: DefaultHistoryLimits()}
	f.st.hist = newHistory(f.limits, 0)
	return f
}

// Apply processes one committed log entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch processes committed entries in order. LogCommand entries
// yield a *Result; other entries (configuration changes) only advance the
// applied index and yield nil. The batch becomes visible to readers as a
// whole, before AppliedIndex moves past it.
//
// A command that is malformed or breaks the entry rules yields a *Result
// whose Err wraps ErrMalformed or ErrInvalid and changes nothing. An entry
// of an envelope version or command type this build does not know panics
// with a *NewerEntryError: a newer raftkv wrote it, and stopping the
// replica beats letting it diverge from the upgraded ones.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if len(logs) == 0 {
		return out
	}
	f.applyAll(logs, out)
	return out
}

// applyAll applies the batch and advances the applied index under one hold
// of the lock, so a snapshot taken at any moment (a backup takes one while
// entries apply) carries an index that covers every change in it.
func (f *FSM) applyAll(logs []*raft.Log, out []any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range logs {
		f.term = l.Term
		if l.Type != raft.LogCommand {
			continue
		}
		r, err := applyEntry(&f.st, l)
		if err != nil {
			panic(err)
		}
		out[i] = r
		if f.st.hist != nil {
			f.st.hist.seal(l.Index)
		}
	}
	// Not deferred: a batch cut short by a panic must not count as applied.
	f.applied.Set(logs[len(logs)-1].Index)
}

// Get returns the key's current state.
func (f *FSM) Get(key string) (KV, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, ok := f.st.kv.Get(entry{key: key})
	if !ok {
		return KV{}, false
	}
	kv := e.kv()
	if f.st.attached.Len() > 0 {
		if a, ok := f.st.attached.Get(attachEntry{key: key}); ok {
			kv.Lease = a.lease
		}
	}
	return kv, true
}

// List returns, in key order, up to limit keys that start with prefix and
// sort strictly after `after` (when after is non-empty). more reports
// whether further matching keys exist; pass the last returned key as after
// to fetch the next page. A limit of zero or less means no limit.
func (f *FSM) List(prefix, after string, limit int) (items []KV, more bool) {
	pivot := prefix
	if after > pivot {
		pivot = after
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.st.kv.Ascend(entry{key: pivot}, func(e entry) bool {
		if !strings.HasPrefix(e.key, prefix) {
			return false
		}
		if e.key == after {
			return true
		}
		if limit > 0 && len(items) == limit {
			more = true
			return false
		}
		items = append(items, e.kv())
		return true
	})
	return items, more
}

// Count returns how many keys start with prefix, counting only those keep
// accepts (all when keep is nil).
func (f *FSM) Count(prefix string, keep func(key string) bool) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := 0
	f.st.kv.Ascend(entry{key: prefix}, func(e entry) bool {
		if !strings.HasPrefix(e.key, prefix) {
			return false
		}
		if keep == nil || keep(e.key) {
			n++
		}
		return true
	})
	return n
}

// Len returns the number of keys.
func (f *FSM) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.kv.Len()
}

// AppliedIndex returns the index of the last log entry this FSM has
// processed, or the index of the snapshot it was restored from.
//
// raft does not hand LogNoop or LogBarrier entries to the FSM, so this can
// trail raft's own applied index while the newest entries are of those
// kinds; wait for it only with indexes of entries the FSM receives.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied blocks until AppliedIndex() >= index or ctx is done, in which
// case it returns ctx.Err().
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	return f.applied.Wait(ctx, index)
}
