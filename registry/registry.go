package registry

import (
	"context"
	"errors"
	"fmt"
	"github.com/raftkv/raftkv/internal/wire"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/applied"
	"github.com/raftkv/raftkv/snapshot"
)

// MaxShards bounds the shard count accepted by Init. Every node runs one
// raft group per shard, so the real limit is far lower; this only keeps a
// typo from being fixed into the cluster forever.
const MaxShards = 1024

// Errors returned by this package. Match them with errors.Is.
var (
	// ErrAlreadyInitialized is Result.Err for an Init whose cluster id or
	// shard count differs from the ones already set.
	ErrAlreadyInitialized = errors.New("registry: cluster already initialized with different settings")

	// ErrUnknownNode is Result.Err for removing a node id that is not
	// registered.
	ErrUnknownNode = errors.New("registry: unknown node")

	// ErrInvalid is Result.Err for a command that decodes but asks for
	// something invalid (empty id, shard count out of range).
	ErrInvalid = errors.New("registry: invalid command")

	// ErrUnknownVersion reports a command envelope version this build does
	// not know.
	ErrUnknownVersion = errors.New("registry: unknown command version")

	// ErrUnknownCommand reports a command type this build does not know.
	ErrUnknownCommand = errors.New("registry: unknown command type")

	// ErrMalformed reports a command or snapshot record that does not parse.
	ErrMalformed = errors.New("registry: malformed encoding")

	// ErrShardCommand is Result.Err for a data shard's command (fsm's
	// transaction types) proposed into the meta group. Nothing changed.
	ErrShardCommand = errors.New("registry: shard command in the meta group's log")

	// ErrBadSnapshot reports a checkpoint that parses but cannot be this
	// registry's state.
	ErrBadSnapshot = errors.New("registry: invalid snapshot")
)

// Node is a registered cluster member.
type Node struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	// Incarnation names the node's data: a random id its data dir gets
	// together with its raft state (cluster/incarnation.go). Peers refuse
	// raft traffic with a node presenting another one. Empty for a node
	// registered by a raftkv from before incarnations, until it restarts.
	Incarnation string `json:"incarnation,omitempty"`
}

// Result is what Apply returns, as *Result, for every LogCommand. Changed
// reports whether the state changed; it is false for repeats and failures.
type Result struct {
	Err     error
	Changed bool
}

// state is the registry's replicated data.
type state struct {
	clusterID string
	shards    int
	nodes     map[string]Node // never iterated in Apply; sorted wherever order matters
	auth      authState
}

// FSM is the meta group's state machine. It implements raft.BatchingFSM;
// reads are safe concurrently with Apply.
type FSM struct {
	group   string
	applied applied.Watch

	mu   sync.RWMutex // guards st and term
	st   state
	term uint64
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New returns an empty registry for the named raft group (normally "meta").
func New(group string) *FSM {
	return &FSM{group: group, st: state{nodes: map[string]Node{}, auth: newAuthState()}}
}

// Apply processes one committed log entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch processes committed entries in order: a *Result for each
// LogCommand, nil for configuration entries, which only advance the
// applied index. A malformed, invalid or shard command is a Result.Err;
// an entry from a newer raftkv panics with a *NewerEntryError. See the
// package comment.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if len(logs) == 0 {
		return out
	}
	f.applyAll(logs, out)
	return out
}

// applyAll applies the batch and advances the applied index under one hold
// of the lock, so a snapshot taken meanwhile carries an index that covers
// every change in it.
func (f *FSM) applyAll(logs []*raft.Log, out []any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range logs {
		f.term = l.Term
		if l.Type != raft.LogCommand {
			continue
		}
		r, err := f.st.applyEntry(f.group, l)
		if err != nil {
			panic(err)
		}
		out[i] = r
	}
	// Not deferred: a batch cut short by a panic must not count as applied.
	f.applied.Set(logs[len(logs)-1].Index)
}

// MaxEntryBytes bounds the size of a command Apply accepts, so that every
// checkpoint record of the state it creates stays under
// snapshot.MaxRecordSize.
const MaxEntryBytes = snapshot.MaxRecordSize - 1024

// NewerEntryError reports a committed entry written by a newer raftkv; the
// state machine stops the node with it (wire.NewerEntryError).
type NewerEntryError = wire.NewerEntryError

// applyEntry applies one LogCommand entry. The only error it returns is a
// *NewerEntryError; every other failure is a Result.Err and changes nothing.
func (s *state) applyEntry(group string, l *raft.Log) (*Result, error) {
	c, err := Decode(l.Data)
	switch {
	case errors.Is(err, ErrUnknownVersion), errors.Is(err, ErrUnknownCommand):
		return nil, &NewerEntryError{Machine: "registry", Group: group, Index: l.Index, Version: l.Data[0], Known: CommandVersion, Type: l.Data[1], Err: err}
	case err != nil:
		return &Result{Err: err}, nil
	case len(l.Data) > MaxEntryBytes:
		return &Result{Err: fmt.Errorf("%w: %v entry of %d bytes, the limit is %d", ErrInvalid, c.Type, len(l.Data), MaxEntryBytes)}, nil
	}
	return s.apply(c), nil
}

// apply is the deterministic core: it reads only the command and the state.
func (s *state) apply(c Command) *Result {
	switch c.Type {
	case CommandInit:
		return s.init(c.ClusterID, c.Shards)
	case CommandUpsertNode, CommandRegisterNode:
		return s.upsert(c.Node)
	case CommandRemoveNode:
		return s.remove(c.Node.ID)
	case CommandNoop:
		return &Result{}
	case CommandPutRole:
		return s.auth.putRole(c.Role)
	case CommandDeleteRole:
		return s.auth.deleteRole(c.Role.Name)
	case CommandPutToken:
		return s.auth.putToken(c.Token)
	case CommandDeleteToken:
		return s.auth.deleteToken(c.Token.ID)
	}
	panic("registry: apply: unhandled " + c.Type.String())
}

func (s *state) init(id string, shards int64) *Result {
	if id == "" || shards < 1 || shards > MaxShards {
		return &Result{Err: fmt.Errorf("%w: init cluster %q with %d shards (want 1..%d)", ErrInvalid, id, shards, MaxShards)}
	}
	if s.clusterID == "" {
		s.clusterID, s.shards = id, int(shards)
		return &Result{Changed: true}
	}
	if s.clusterID != id || int64(s.shards) != shards {
		return &Result{Err: fmt.Errorf("%w: have cluster %q with %d shards, asked for %q with %d",
			ErrAlreadyInitialized, s.clusterID, s.shards, id, shards)}
	}
	return &Result{}
}

func (s *state) upsert(n Node) *Result {
	if n.ID == "" {
		return &Result{Err: fmt.Errorf("%w: empty node id", ErrInvalid)}
	}
	cur, ok := s.nodes[n.ID]
	if ok && n.Incarnation == "" {
		// An entry without an incarnation (an older raftkv's, or a join
		// that names none) changes the addresses and keeps the one known.
		n.Incarnation = cur.Incarnation
	}
	if ok && cur == n {
		return &Result{}
	}
	s.nodes[n.ID] = n
	return &Result{Changed: true}
}

func (s *state) remove(id string) *Result {
	if _, ok := s.nodes[id]; !ok {
		return &Result{Err: fmt.Errorf("%w: %q", ErrUnknownNode, id)}
	}
	delete(s.nodes, id)
	return &Result{Changed: true}
}

// sortedNodes returns the nodes ordered by ID.
func (s *state) sortedNodes() []Node {
	out := make([]Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// ClusterID returns the cluster id, or "" before Init is applied.
func (f *FSM) ClusterID() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.clusterID
}

// Shards returns the shard count, or 0 before Init is applied.
func (f *FSM) Shards() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.shards
}

// Nodes returns copies of all registered nodes, sorted by ID.
func (f *FSM) Nodes() []Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.sortedNodes()
}

// Node returns the registered node with the given id.
func (f *FSM) Node(id string) (Node, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n, ok := f.st.nodes[id]
	return n, ok
}

// AppliedIndex returns the index of the last log entry processed, or of
// the snapshot restored. Like fsm.FSM, it does not see raft's LogNoop and
// LogBarrier entries.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied blocks until AppliedIndex() >= index or ctx is done, in which
// case it returns ctx.Err().
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	return f.applied.Wait(ctx, index)
}
