package cluster

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Finding out what became of a write whose leader stepped down.
//
// raft answers ErrLeadershipLost for a proposal that was in the leader's log
// when it stopped leading: the entry may still be committed by the next
// leader, or be overwritten. Telling the client "outcome unknown" is true but
// unhelpful when this node can find out. It stays in the group as a
// follower, so its log and state machine follow the new leader: if the
// entry it wrote at index i in term t is later applied here with the same
// index and term, it is the same entry (raft's log matching property) and
// its result is the write's result; if a different entry is applied or
// stored at i, the write was dropped and can safely be retried elsewhere.
// The state machine's results are kept for the last outcomeWindow indices
// for this purpose only; they are not part of its state.

const (
	outcomeWindow = 8192
	outcomePoll   = 5 * time.Millisecond
	// outcomeWait bounds the wait for the new leader to settle the entry.
	outcomeWait = 3 * time.Second
)

// outcomeLog wraps a group's state machine and remembers the result of each
// recently applied entry by index.
type outcomeLog struct {
	stateMachine
	mu      sync.Mutex
	entries [outcomeWindow]appliedEntry
	// onRestore, once set (when the node has started), is called after
	// the state machine was replaced by a checkpoint from the leader.
	onRestore atomic.Pointer[func()]
}

type appliedEntry struct {
	index, term uint64
	digest      uint64 // of the entry's data, to tell two entries apart
	result      any
}

func digest(data []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(data)
	return h.Sum64()
}

var _ raft.BatchingFSM = (*outcomeLog)(nil)

func (o *outcomeLog) Apply(l *raft.Log) any { return o.ApplyBatch([]*raft.Log{l})[0] }

func (o *outcomeLog) ApplyBatch(logs []*raft.Log) []any {
	results := o.stateMachine.ApplyBatch(logs)
	o.mu.Lock()
	for i, l := range logs {
		o.entries[l.Index%outcomeWindow] = appliedEntry{index: l.Index, term: l.Term, digest: digest(l.Data), result: results[i]}
	}
	o.mu.Unlock()
	return results
}

func (o *outcomeLog) Snapshot() (raft.FSMSnapshot, error) { return o.stateMachine.Snapshot() }
func (o *outcomeLog) Restore(rc io.ReadCloser) error {
	if err := o.stateMachine.Restore(rc); err != nil {
		return err
	}
	if f := o.onRestore.Load(); f != nil {
		(*f)()
	}
	return nil
}

// applied returns what was applied at index, if it is still remembered.
func (o *outcomeLog) applied(index uint64) (appliedEntry, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.entries[index%outcomeWindow]
	return e, e.index == index
}

// outcomeOf waits until this node knows what became of cmd, which it
// proposed as leader in term and raft placed at index: the result if that
// entry was applied, errNotLeader if a different entry took its place
// (nothing happened: the caller retries on the new leader), or
// ErrIndeterminate when it cannot tell before ctx ends or outcomeWait
// passes. An entry counts as this proposal only with the same index, term
// and data; as a different one only when its data differ, so a doubt is
// never resolved as "not applied".
func (g *group) outcomeOf(ctx context.Context, cmd []byte, index, term uint64) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, outcomeWait)
	defer cancel()
	mine := digest(cmd)
	var entry raft.Log
	for {
		if e, ok := g.outcomes.applied(index); ok {
			switch {
			case e.digest != mine:
				return nil, errNotLeader
			case e.term == term:
				return e.result, nil
			}
			break // same data, another term: cannot tell which proposal it was
		}
		if err := g.logs.GetLog(index, &entry); err == nil && entry.Term != term && (entry.Type != raft.LogCommand || !bytes.Equal(entry.Data, cmd)) {
			return nil, errNotLeader // overwritten by the new leader's entry
		}
		if g.fsm.AppliedIndex() >= index+outcomeWindow/2 {
			break // applied long ago (or covered by a snapshot) and forgotten
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: leadership lost while committing; not yet known whether index %d survived", ErrIndeterminate, index)
		case <-time.After(outcomePoll):
		}
	}
	return nil, fmt.Errorf("%w: leadership lost while committing", ErrIndeterminate)
}
