package cluster

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// CheckpointInfo describes the newest checkpoint of one group on this node.
type CheckpointInfo struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	Bytes int64  `json:"bytes"`
	// Taken is false when nothing was written since the last checkpoint,
	// which is then reported instead.
	Taken bool `json:"taken"`
}

// Checkpoint takes a checkpoint of every group on this node now, and lets
// raft compact each log behind it. Writes keep flowing meanwhile: the state
// machines hand raft a copy-on-write clone.
func (n *Node) Checkpoint() ([]CheckpointInfo, error) {
	if err := n.checkOpen(); err != nil {
		return nil, err
	}
	var out []CheckpointInfo
	for _, name := range n.order {
		info, err := n.groups[name].checkpoint()
		if err != nil {
			return out, fmt.Errorf("checkpoint %s: %w", name, err)
		}
		out = append(out, info)
	}
	return out, nil
}

func (g *group) checkpoint() (CheckpointInfo, error) {
	info := CheckpointInfo{Name: g.name}
	// raft refuses a snapshot only when nothing was ever applied, and
	// would write the same state again at the newest checkpoint's index.
	// Its snapshots stop at the last command or configuration entry
	// applied (its own no-ops do not count), which is what is compared.
	metas, err := g.snaps.List()
	if err != nil {
		return info, err
	}
	last, err := g.lastAppliableIndex(g.raft.AppliedIndex())
	if err == nil && len(metas) > 0 && metas[0].Index >= last {
		info.Index, info.Term, info.Bytes = metas[0].Index, metas[0].Term, metas[0].Size
		return info, nil
	}
	f := g.raft.Snapshot()
	err = f.Error()
	switch {
	case err == nil:
		meta, rc, err := f.Open()
		if err != nil {
			return info, err
		}
		rc.Close()
		info.Index, info.Term, info.Bytes, info.Taken = meta.Index, meta.Term, meta.Size, true
		g.logger.Info("checkpoint taken", "index", meta.Index, "bytes", meta.Size)
		return info, nil
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		metas, lerr := g.snaps.List()
		if lerr != nil {
			return info, lerr
		}
		if len(metas) > 0 {
			info.Index, info.Term, info.Bytes = metas[0].Index, metas[0].Term, metas[0].Size
		}
		return info, nil
	case errors.Is(err, raft.ErrRaftShutdown):
		return info, fmt.Errorf("%w: group is shut down", ErrUnavailable)
	}
	return info, err
}
