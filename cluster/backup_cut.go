package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/fsm"
)

// A backup copies the shards one after another, so without more care a
// cross-shard transaction that ran between two copies would come back half
// applied: committed (its writes applied) in the shard copied later, and
// not even prepared in the shard copied earlier. The cut below turns the
// copies into one consistent cut as far as transactions go:
//
//  1. Each shard's copy is a fork of this node's replica (fsm.Fork, O(1)),
//     a state at one index of the shard's log.
//  2. After every copy is taken, the shard's log after its copy (the tail)
//     is read from this node's log store, up to what the shard's leader had
//     committed by then.
//  3. A transaction is applied in a copy when the copy holds its commit's
//     effect: a committed record on the primary (whose decide entry also
//     applied the primary's part), or a finished marker on another
//     participant of a transaction whose record says committed. For every
//     such transaction, each participant copy that holds no trace of it (it
//     was taken before the prepare landed) is rolled forward through its
//     tail to that prepare, which stages the writes. Rolling forward may
//     bring in more applied transactions; the loop runs until none is
//     missing anywhere. It ends: copies only move forward, and never past
//     their tails, which hold everything needed (a transaction applied in a
//     copy committed, and so prepared everywhere, before the tails were
//     read).
//  4. Every transaction a copy still leaves open (a staged part, a pending
//     record) gets a decision in the archive: committed if some copy holds
//     its commit applied (every other copy then holds it staged or
//     applied), else aborted (no copy holds any of its writes applied).
//     Restore applies the decisions, so the restored shards finish every
//     transaction the same way.
//
// Every write acknowledged before the backup began is in it: its commit
// was applied on the primary before that copy's read index.

// shardCut is one shard's copy while the cut is formed.
type shardCut struct {
	g        *group
	fork     *fsm.FSM
	tail     []*raft.Log // entries after the copy the FSM sees, in index order
	prepares []tailPrepare
}

// tailPrepare is a prepare entry found in a shard's tail.
type tailPrepare struct {
	index        uint64
	id, primary  string
	participants []string
}

// readTail reads, from this node's log, every entry of c's shard after its
// copy up to what the shard's leader has committed now.
func (n *Node) readTail(ctx context.Context, c *shardCut) error {
	if err := n.waitReadIndex(ctx, c.g); err != nil {
		return err
	}
	end := c.g.fsm.AppliedIndex()
	for i := c.fork.AppliedIndex() + 1; i <= end; i++ {
		l := new(raft.Log)
		if err := c.g.logs.GetLog(i, l); err != nil {
			return fmt.Errorf("%w: backup of %s: log entry %d is no longer in this node's log (a checkpoint compacted it while the backup ran); retry the backup: %v",
				ErrUnavailable, c.g.name, i, err)
		}
		if l.Type != raft.LogCommand && l.Type != raft.LogConfiguration {
			continue // never handed to the FSM
		}
		c.tail = append(c.tail, l)
		if l.Type != raft.LogCommand {
			continue
		}
		if cmd, err := fsm.Decode(l.Data); err == nil && cmd.Type == fsm.CommandTxnPrepare && cmd.Txn != nil {
			c.prepares = append(c.prepares, tailPrepare{index: i, id: cmd.Txn.ID, primary: cmd.Txn.Primary,
				participants: slices.Clone(cmd.Txn.Participants)})
		}
	}
	return nil
}

// rollTo applies c's tail to its fork up to index.
func (c *shardCut) rollTo(index uint64) {
	from := c.fork.AppliedIndex()
	var batch []*raft.Log
	for _, l := range c.tail {
		if l.Index > from && l.Index <= index {
			batch = append(batch, l)
		}
	}
	c.fork.ApplyBatch(batch)
}

// mentions reports whether a copy holds any trace of transaction id: a
// staged part, a finished marker, or (on the primary) a record.
func mentions(f *fsm.FSM, id string, primary bool) bool {
	if _, ok := f.Staged(id); ok || f.Finished(id) {
		return true
	}
	if primary {
		_, ok := f.Record(id)
		return ok
	}
	return false
}

// cutState answers, for the copies as they stand, whether a transaction is
// applied in some copy. Records are looked up on this node's replica of
// the primary, which has applied at least the primary's whole tail.
type cutState struct {
	n      *Node
	copies map[string]*shardCut
}

// decided returns the record of id as this node's replica of its primary
// holds it now.
func (s cutState) decided(id, primary string) (fsm.Record, bool) {
	g, ok := s.n.groups[primary]
	if !ok || g.kv == nil {
		return fsm.Record{}, false
	}
	return g.kv.Record(id)
}

// applied reports whether some copy holds transaction id's commit applied,
// and the committed record when it does.
func (s cutState) applied(id, primary string, participants []string) (fsm.Record, bool) {
	if p := s.copies[primary]; p != nil {
		if r, ok := p.fork.Record(id); ok && r.State == fsm.StateCommitted {
			return r, true
		}
	}
	var live *fsm.Record
	for _, name := range participants {
		c := s.copies[name]
		if name == primary || c == nil || !c.fork.Finished(id) {
			continue
		}
		if _, staged := c.fork.Staged(id); staged {
			continue
		}
		if live == nil {
			r, ok := s.decided(id, primary)
			if !ok || r.State != fsm.StateCommitted {
				return fsm.Record{}, false // finished here by an abort
			}
			live = &r
		}
		return *live, true
	}
	return fsm.Record{}, false
}

// formCut rolls the copies forward until no transaction is applied in one
// copy and missing from another, and returns the decision for every
// transaction they leave open.
func (n *Node) formCut(ctx context.Context, order []string, copies map[string]*shardCut) ([]backup.Decision, error) {
	for _, name := range order {
		if err := n.readTail(ctx, copies[name]); err != nil {
			return nil, err
		}
	}
	s := cutState{n: n, copies: copies}
	for moved := true; moved; {
		moved = false
		for _, name := range order {
			c := copies[name]
			for _, p := range c.prepares {
				if p.index <= c.fork.AppliedIndex() || mentions(c.fork, p.id, name == p.primary) {
					continue
				}
				if _, ok := s.applied(p.id, p.primary, p.participants); ok {
					c.rollTo(p.index)
					moved = true
				}
			}
		}
	}
	return s.decisions(order), nil
}

// decisions lists, in id order, how each transaction left open by some copy
// ends in the restored cluster.
func (s cutState) decisions(order []string) []backup.Decision {
	open := map[string]backup.Decision{}
	for _, name := range order {
		f := s.copies[name].fork
		staged, pending := f.Unfinished()
		for _, id := range staged {
			if st, ok := f.Staged(id); ok {
				if _, seen := open[id]; !seen {
					open[id] = backup.Decision{ID: id, Primary: st.Primary, Participants: st.Participants}
				}
			}
		}
		for _, id := range pending {
			if r, ok := f.Record(id); ok {
				open[id] = backup.Decision{ID: id, Primary: name, Participants: r.Participants}
			}
		}
	}
	out := make([]backup.Decision, 0, len(open))
	for _, d := range open {
		d.State = backup.DecisionAborted
		if r, ok := s.applied(d.ID, d.Primary, d.Participants); ok {
			d.State, d.Succeeded = backup.DecisionCommitted, r.Succeeded
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b backup.Decision) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// backupHooks holds, per node, the function PrepareBackup calls after it
// has copied each group (SetBackupHook).
var backupHooks sync.Map // *Node → func(group string)

// SetBackupHook installs a function that PrepareBackup calls right after
// it has copied each group, before the next: tests run transactions there
// to land them between two groups' copies. nil removes it.
func (n *Node) SetBackupHook(h func(group string)) {
	if h == nil {
		backupHooks.Delete(n)
		return
	}
	backupHooks.Store(n, h)
}

func (n *Node) backupCopied(group string) {
	if h, ok := backupHooks.Load(n); ok {
		h.(func(string))(group)
	}
}
