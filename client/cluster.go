package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// ClusterStatus is the cluster as one node sees it (GET /v1/cluster).
type ClusterStatus struct {
	ClusterID string        `json:"cluster_id"`
	Shards    int           `json:"shards"`
	Nodes     []NodeInfo    `json:"nodes"`
	Groups    []GroupStatus `json:"groups"`
	// RecentElections are the answering node's latest candidacies and
	// step-downs, oldest first.
	RecentElections []ElectionEvent `json:"recent_elections"`

	// Removed is set when the answering node knows it was removed from the
	// cluster: it serves no data (every key request answers ErrRemoved).
	Removed *Removal `json:"removed,omitempty"`

	// Node is the id of the node that answered.
	Node string `json:"node"`
	// Raw is the answer exactly as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// NodeInfo is one entry of the node registry.
type NodeInfo struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	// Incarnation names the node's data (a new one after its data dir was
	// wiped); empty from a server that does not report it.
	Incarnation string `json:"incarnation,omitempty"`
	// Reachable says whether the answering node could reach this node's
	// /livez (nil if the server did not probe).
	Reachable *bool `json:"reachable,omitempty"`
	// Stage is "voter", "nonvoter" or "registered" (joining or leaving).
	Stage string `json:"stage"`
	// Health is set only by the node leading the meta group.
	Health *MemberHealth `json:"health,omitempty"`
}

// MemberHealth is a node's health as the meta leader sees it.
type MemberHealth struct {
	Status      string    `json:"status"` // "alive" or "failed"
	Healthy     bool      `json:"healthy"`
	StableSince time.Time `json:"stable_since"`
	LastSeenMs  int64     `json:"last_seen_ms"`
}

// GroupStatus is the state of one raft group on the answering node.
type GroupStatus struct {
	Name              string   `json:"name"`   // "meta" or "shard-K"
	Leader            string   `json:"leader"` // node id, "" if none known
	Term              uint64   `json:"term"`
	CommitIndex       uint64   `json:"commit_index"`
	AppliedIndex      uint64   `json:"applied_index"`
	LastSnapshotIndex uint64   `json:"last_snapshot_index"`
	Voters            []string `json:"voters"`
	Nonvoters         []string `json:"nonvoters"`

	// Extra detail; zero when the server does not report it.
	State           string `json:"state"` // this node's role: Leader, Follower, Candidate
	LastLogIndex    uint64 `json:"last_log_index"`
	FSMAppliedIndex uint64 `json:"fsm_applied_index"`
	LastContactMs   int64  `json:"last_contact_ms"` // since this follower last heard from the leader
	// RefusedConnections counts the raft connections the answering node
	// refused for the group (another cluster, node or incarnation).
	RefusedConnections uint64 `json:"refused_connections"`
	LeaderChanges      uint64 `json:"leader_changes"`
	// Candidacies and StepDowns count this node's elections started and
	// leaderships lost, by cause.
	Candidacies map[string]uint64 `json:"candidacies"`
	StepDowns   map[string]uint64 `json:"step_downs"`
	// Followers is set only when the answering node leads the group: how
	// far behind each other member is, as the leader sees it.
	Followers []FollowerProgress `json:"followers,omitempty"`
}

// Removal says how a node knows it is no longer a member of the cluster.
type Removal struct {
	// Groups are the groups that no longer list the node.
	Groups []string `json:"groups"`
	// Evidence is "configuration" (its own replicas show the change) or
	// "peer" (Peer, the leader of meta, does not list it: it was removed
	// while down).
	Evidence string    `json:"evidence"`
	Peer     string    `json:"peer,omitempty"`
	Since    time.Time `json:"since"`
	// Message says what happened and how the node comes back.
	Message string `json:"message"`
}

// FollowerProgress is one member of a group as the group's leader sees it.
type FollowerProgress struct {
	ID    string `json:"id"`
	Voter bool   `json:"voter"`
	// Reachable: the leader's heartbeats to it succeed.
	Reachable bool `json:"reachable"`
	// LastContactMs is how long ago the leader last heard from it (0 while
	// heartbeats succeed; it grows while the follower is down).
	LastContactMs int64 `json:"last_contact_ms"`
	// MatchIndex is its last log index as it last reported it (about every
	// second), LagEntries the leader's last index minus that, -1 before
	// its first report; ReportAgeMs is the report's age.
	MatchIndex  uint64 `json:"match_index"`
	LagEntries  int64  `json:"lag_entries"`
	ReportAgeMs int64  `json:"report_age_ms"`
}

// ElectionEvent is one candidacy ("candidate") or lost leadership
// ("step_down") of the answering node, with its cause: heartbeat_timeout,
// leader_gone, transfer, first_election, lost_quorum or shutdown.
type ElectionEvent struct {
	At    time.Time `json:"at"`
	Group string    `json:"group"`
	Event string    `json:"event"`
	Cause string    `json:"cause"`
	Term  uint64    `json:"term"`
}

// Group returns the status of the named group, if present.
func (s *ClusterStatus) Group(name string) (GroupStatus, bool) {
	for _, g := range s.Groups {
		if g.Name == name {
			return g, true
		}
	}
	return GroupStatus{}, false
}

// NodeByID returns the registry entry for id, if present.
func (s *ClusterStatus) NodeByID(id string) (NodeInfo, bool) {
	for _, n := range s.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return NodeInfo{}, false
}

// StatusOption changes what Cluster asks for.
type StatusOption func(*statusOptions)

type statusOptions struct{ noProbe bool }

// NoProbe makes Cluster skip the reachability probe of every node: the
// answer is the node's own view only (Reachable stays nil), and it comes
// without waiting for the slowest probe.
func NoProbe() StatusOption { return func(o *statusOptions) { o.noProbe = true } }

// Cluster returns the cluster status as seen by the node that answers,
// answered locally without a quorum. By default every node is probed
// (probe=true), so Reachable is set; NoProbe skips that.
func (c *Client) Cluster(ctx context.Context, opts ...StatusOption) (ClusterStatus, error) {
	var o statusOptions
	for _, opt := range opts {
		opt(&o)
	}
	return c.status(ctx, !o.noProbe)
}

// Overview is every registered node's own status, gathered by one node
// (GET /v1/cluster/overview; what the dashboard draws).
type Overview struct {
	// Node is the node that gathered it; At is when it finished, on that
	// node's clock.
	Node  string         `json:"node"`
	At    time.Time      `json:"at"`
	Nodes []NodeOverview `json:"nodes"`
	// Removed is set when the gathering node was removed from the
	// cluster: what it shows is its stale view.
	Removed *Removal `json:"removed,omitempty"`
}

// NodeOverview is one registered node's part of an Overview.
type NodeOverview struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	// Reachable says whether the node answered the gathering node in time
	// (700 ms); Status is its answer, Error why there is none.
	Reachable bool           `json:"reachable"`
	Error     string         `json:"error,omitempty"`
	Status    *ClusterStatus `json:"status,omitempty"`
}

// Overview asks one node for every registered node's status at once. Like
// Cluster it needs no quorum: a node cut off from the others reports them
// unreachable.
func (c *Client) Overview(ctx context.Context) (Overview, error) {
	var ov Overview
	err := c.getJSON(ctx, "/v1/cluster/overview", &ov)
	return ov, err
}

// CheckpointInfo is one group's checkpoint taken by Checkpoint.
type CheckpointInfo struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	Bytes int64  `json:"bytes"`
	// Taken is false when nothing was written since the group's last
	// checkpoint, which is reported instead.
	Taken bool `json:"taken"`
}

// Checkpoint makes the node that answers take a checkpoint of every group
// it holds now and compact each log behind it (POST /v1/cluster/snapshot).
// It acts on one node: use At to pick which. Repeating it is harmless, so
// it is sent to the next endpoint after a transport failure.
func (c *Client) Checkpoint(ctx context.Context) ([]CheckpointInfo, error) {
	var out struct {
		Groups []CheckpointInfo `json:"groups"`
	}
	err := c.sendJSON(ctx, http.MethodPost, "/v1/cluster/snapshot", nil, true, &out)
	return out.Groups, err
}

func (c *Client) status(ctx context.Context, probe bool) (ClusterStatus, error) {
	var q url.Values
	if probe {
		q = url.Values{"probe": {"true"}}
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/cluster", query: q})
	if err != nil {
		return ClusterStatus{}, err
	}
	var st ClusterStatus
	if err := decodeJSON(resp, &st); err != nil {
		return ClusterStatus{}, err
	}
	if resp.node != "" {
		st.Node = resp.node
	}
	st.Raw = json.RawMessage(resp.body)
	return st, nil
}

// Join asks the cluster to add node id, reachable at raftAddr for raft and
// httpAddr for HTTP. It returns once the node is a voter of every group.
// Repeating a join is harmless; a known id with new addresses updates them.
// Node ids must be unique.
func (c *Client) Join(ctx context.Context, id, raftAddr, httpAddr string) error {
	if id == "" || raftAddr == "" || httpAddr == "" {
		return fmt.Errorf("%w: join needs id, raft address and http address", ErrBadRequest)
	}
	body := map[string]string{"id": id, "raft_addr": raftAddr, "http_addr": httpAddr}
	return c.post(ctx, "/v1/cluster/join", body, true)
}

// Leave asks the cluster to remove node id from every group. It works while
// that node is down. An unknown id fails with ErrNotFound.
func (c *Client) Leave(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("%w: leave needs a node id", ErrBadRequest)
	}
	return c.post(ctx, "/v1/cluster/leave", map[string]string{"id": id}, true)
}

// TransferLeadership moves leadership of group (e.g. "shard-2" or "meta")
// to node to, or to any other voter when to is "".
func (c *Client) TransferLeadership(ctx context.Context, group, to string) error {
	if group == "" {
		return fmt.Errorf("%w: transfer-leadership needs a group", ErrBadRequest)
	}
	body := map[string]string{"group": group}
	if to != "" {
		body["to"] = to
	}
	return c.post(ctx, "/v1/cluster/transfer-leadership", body, false)
}

func (c *Client) post(ctx context.Context, path string, body any, idempotent bool) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	_, err = c.do(ctx, request{
		method: http.MethodPost, path: path, header: h, body: data,
		write: true, idempotent: idempotent,
	})
	return err
}
