package cluster

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/histo"
	"github.com/raftkv/raftkv/logstore"
	"github.com/raftkv/raftkv/raftlane"
	"github.com/raftkv/raftkv/registry"
)

// Status is the cluster as this node sees it (GET /v1/cluster).
type Status struct {
	ClusterID string        `json:"cluster_id"`
	Shards    int           `json:"shards"`
	Node      string        `json:"node"`
	Nodes     []NodeStatus  `json:"nodes"`
	Groups    []GroupStatus `json:"groups"`
	// RecentElections are this node's latest candidacies and step-downs,
	// oldest first (elections.go explains the causes).
	RecentElections []ElectionEvent `json:"recent_elections"`
	// RecentTxnRecoveries are the transactions this node's recovery
	// finished lately (a coordinator gone quiet), oldest first.
	RecentTxnRecoveries []TxnRecoveryEvent `json:"recent_txn_recoveries"`
	// Log is the node's write-ahead log (every group's raft log).
	Log logstore.Stats `json:"log"`
	// Forwarded counts the batch calls that carried this node's forwarded
	// key requests to leaders.
	Forwarded ForwardStats `json:"forwarded"`
	// Lane counts the appends this node sent on its lanes to its peers
	// (raftlane/), and the writes its lane connections took.
	Lane raftlane.Stats `json:"lane"`
	// DeadNodesRemoved counts the nodes this node removed as dead
	// (Config.DeadNodeTimeout) while it led the meta group.
	DeadNodesRemoved uint64 `json:"dead_nodes_removed"`
	// Removed is set once this node knows it is no longer a member of the
	// cluster (removed.go): how it knows, and what to do.
	Removed *Removal `json:"removed,omitempty"`
}

// NodeStatus is a registry entry plus, when probed, whether this node could
// reach it: a node-to-node call on its raft port answered.
type NodeStatus struct {
	registry.Node
	// Stage is the node's place in the meta group's configuration:
	// "voter", "nonvoter" (catching up before promotion), or "registered"
	// (in the registry but in no configuration yet, or any more: joining
	// or leaving).
	Stage string `json:"stage"`
	// Health is filled in by the node that leads the meta group, which
	// watches every member (autopilot.go); other nodes leave it out.
	Health *MemberHealth `json:"health,omitempty"`
	// Reachable is nil unless the status was asked with probing.
	Reachable *bool  `json:"reachable,omitempty"`
	ProbeErr  string `json:"probe_error,omitempty"`
}

// GroupStatus describes one raft group on this node.
type GroupStatus struct {
	Name              string `json:"name"`
	State             string `json:"state"`
	Leader            string `json:"leader"`
	Term              uint64 `json:"term"`
	LastLogIndex      uint64 `json:"last_log_index"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	FSMAppliedIndex   uint64 `json:"fsm_applied_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	LastContactMs     int64  `json:"last_contact_ms"`
	LeaderChanges     uint64 `json:"leader_changes"`
	// Candidacies counts the elections this node started, by cause;
	// StepDowns the leaderships it lost, by cause.
	Candidacies map[string]uint64 `json:"candidacies,omitempty"`
	StepDowns   map[string]uint64 `json:"step_downs,omitempty"`
	// RefusedConnections counts the raft connections this node refused
	// for the group after their hello: from another cluster, for another
	// node, or expecting or presenting another incarnation (a wiped data
	// dir; incarnation.go). The log says whose and why.
	RefusedConnections uint64   `json:"refused_connections"`
	Voters             []string `json:"voters"`
	Nonvoters          []string `json:"nonvoters"`
	// Followers is, on the group's leader only, how far behind each other
	// member is and when the leader last heard from it (followers.go).
	Followers []FollowerProgress `json:"followers,omitempty"`
	// Applies counts the writes this node proposed as the group's leader
	// and saw committed and applied, and ApplySeconds their total time
	// from proposal to applied; both only grow, so a reader takes rates.
	Applies      uint64         `json:"applies"`
	ApplySeconds float64        `json:"apply_seconds"`
	ApplyLatency histo.Snapshot `json:"-"`
	// Checkpoints counts the checkpoints this node wrote for the group
	// since it started, CheckpointBytes is the newest one's size and
	// CheckpointFailures those that failed or were cancelled.
	Checkpoints        uint64         `json:"checkpoints"`
	CheckpointBytes    int64          `json:"checkpoint_bytes"`
	CheckpointFailures uint64         `json:"checkpoint_failures"`
	CheckpointLatency  histo.Snapshot `json:"-"`
	RecoveryStatus

	// WatchHistoryFrom is the oldest revision this replica still holds
	// every change of, for watches (a data shard only; docs/watch.md).
	WatchHistoryFrom uint64 `json:"watch_history_from,omitempty"`
}

// Status reports every group's raft state as this node knows it. It never
// waits for a leader, so it works on a node cut off from the others.
func (n *Node) Status() Status {
	st := Status{ClusterID: n.clusterID, Shards: n.shards, Node: n.cfg.NodeID, Nodes: []NodeStatus{}}
	stages := map[string]string{}
	if conf, _, err := n.meta.configuration(); err == nil {
		for _, s := range conf.Servers {
			stages[string(s.ID)] = "nonvoter"
			if s.Suffrage == raft.Voter {
				stages[string(s.ID)] = "voter"
			}
		}
	}
	for _, nd := range n.meta.reg.Nodes() {
		stage := stages[nd.ID]
		if stage == "" {
			stage = "registered"
		}
		st.Nodes = append(st.Nodes, NodeStatus{Node: nd, Stage: stage, Health: n.health(nd.ID)})
	}
	st.DeadNodesRemoved = n.deadNodesRemoved.Load()
	st.Removed = n.removal.Load()
	for _, name := range n.order {
		g := n.groups[name]
		gs := g.status()
		if gs.State == raft.Leader.String() {
			gs.Followers = n.followers(g)
		}
		if k := n.refused[name]; k != nil {
			gs.RefusedConnections = k.Load()
		}
		st.Groups = append(st.Groups, gs)
	}
	st.RecentElections = n.recent.list()
	st.RecentTxnRecoveries = n.recoveries.list()
	if n.logDB != nil {
		st.Log = n.logDB.Stats()
	}
	if n.rpc != nil {
		st.Forwarded = n.rpc.batch.stats()
	}
	if n.lane != nil {
		st.Lane = n.lane.Stats()
	}
	return st
}

func (g *group) status() GroupStatus {
	stats := g.raft.Stats()
	s := GroupStatus{
		Name:              g.name,
		State:             g.raft.State().String(),
		Leader:            g.leaderID(),
		Term:              g.raft.CurrentTerm(),
		LastLogIndex:      g.raft.LastIndex(),
		CommitIndex:       g.raft.CommitIndex(),
		AppliedIndex:      g.raft.AppliedIndex(),
		FSMAppliedIndex:   g.fsm.AppliedIndex(),
		LastSnapshotIndex: parseUint(stats["last_snapshot_index"]),
		LastContactMs:     -1,
		LeaderChanges:     g.leaderChanges.Load(),
		Voters:            []string{},
		Nonvoters:         []string{},
		RecoveryStatus:    g.recovery.status(),
	}
	if g.kv != nil {
		s.WatchHistoryFrom = g.kv.HistoryStart()
	}
	s.Candidacies, s.StepDowns = g.electionCounts()
	s.ApplyLatency = g.applies.Snapshot()
	s.Applies, s.ApplySeconds = s.ApplyLatency.Count, s.ApplyLatency.Sum
	s.CheckpointLatency = g.checkpoints.durations.Snapshot()
	s.Checkpoints = s.CheckpointLatency.Count
	s.CheckpointBytes = g.checkpoints.lastBytes.Load()
	s.CheckpointFailures = g.checkpoints.failed.Load()
	if g.isLeader() {
		s.LastContactMs = 0
	} else if lc := g.raft.LastContact(); !lc.IsZero() {
		s.LastContactMs = time.Since(lc).Milliseconds()
	}
	if conf, _, err := g.configuration(); err == nil {
		for _, srv := range conf.Servers {
			if srv.Suffrage == raft.Voter {
				s.Voters = append(s.Voters, string(srv.ID))
			} else {
				s.Nonvoters = append(s.Nonvoters, string(srv.ID))
			}
		}
	}
	return s
}

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// Info returns the cluster id and shard count.
func (n *Node) Info() ClusterInfo { return ClusterInfo{ClusterID: n.clusterID, Shards: n.shards} }

// ProbedStatus is Status plus an HTTP liveness probe from this node to every
// registered node, so an operator can locate an unreachable node with one
// request to any survivor.
func (n *Node) ProbedStatus(ctx context.Context) Status {
	st := n.Status()
	var wg sync.WaitGroup
	for i := range st.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := n.probe(ctx, st.Nodes[i].RaftAddr)
			ok := err == nil
			st.Nodes[i].Reachable = &ok
			if err != nil {
				st.Nodes[i].ProbeErr = err.Error()
			}
		}()
	}
	wg.Wait()
	return st
}

// probeTimeout bounds each liveness probe of ProbedStatus.
const probeTimeout = 500 * time.Millisecond

func (n *Node) probe(ctx context.Context, raftAddr string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := n.rpc.call(ctx, raftAddr, MetaGroup, "ping", struct{}{}, nil)
	return err
}
