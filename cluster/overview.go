package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Overview is the whole cluster as one node can gather it (GET
// /v1/cluster/overview, the dashboard's data): every registered node's own
// Status, fetched over the raft port, or why it could not be.
type Overview struct {
	// Node is the node that gathered the overview.
	Node string `json:"node"`
	// At is when it finished gathering, on its clock.
	At    time.Time      `json:"at"`
	Nodes []NodeOverview `json:"nodes"`
	// Removed is set when the gathering node was removed from the cluster
	// (Status.Removed): what it shows is its stale view.
	Removed *Removal `json:"removed,omitempty"`
}

// NodeOverview is one registered node's part of an Overview.
type NodeOverview struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	// Reachable says whether the node answered within overviewTimeout;
	// Status is its answer, Error why there is none.
	Reachable bool    `json:"reachable"`
	Error     string  `json:"error,omitempty"`
	Status    *Status `json:"status,omitempty"`
}

// overviewTimeout bounds each node's answer: a dashboard refreshing every
// second must show a dead node as down, not wait on it.
const overviewTimeout = 700 * time.Millisecond

// Overview asks every registered node for its Status, all at once, and
// answers with what came back in time. It needs no quorum: a node cut off
// from the others still shows what it sees (itself, and the rest down).
func (n *Node) Overview(ctx context.Context) Overview {
	members := n.meta.reg.Nodes()
	ov := Overview{Node: n.cfg.NodeID, Nodes: make([]NodeOverview, len(members)), Removed: n.removal.Load()}
	var wg sync.WaitGroup
	for i, m := range members {
		ov.Nodes[i] = NodeOverview{ID: m.ID, HTTPAddr: m.HTTPAddr, RaftAddr: m.RaftAddr}
		if m.ID == n.cfg.NodeID {
			st := n.Status()
			ov.Nodes[i].Reachable, ov.Nodes[i].Status = true, &st
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := n.remoteStatus(ctx, m.RaftAddr)
			if err != nil {
				ov.Nodes[i].Error = err.Error()
				return
			}
			ov.Nodes[i].Reachable, ov.Nodes[i].Status = true, &st
		}()
	}
	wg.Wait()
	ov.At = time.Now()
	return ov
}

// remoteStatus runs "status" on the node at raftAddr.
func (n *Node) remoteStatus(ctx context.Context, raftAddr string) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, overviewTimeout)
	defer cancel()
	var raw []byte
	if _, err := n.rpc.call(ctx, raftAddr, MetaGroup, "status", struct{}{}, &raw); err != nil {
		return Status{}, err
	}
	var st Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return Status{}, fmt.Errorf("decoding the status from %s: %v", raftAddr, err)
	}
	return st, nil
}

// statusHere answers "status": this node's Status as JSON, the encoding
// its HTTP API gives it (it holds times and maps of counters).
func (n *Node) statusHere(context.Context, *group, struct{}) ([]byte, error) {
	return json.Marshal(n.Status())
}
