package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/logstore"
	"github.com/raftkv/raftkv/registry"
)

// Outage recovery: when a majority of the nodes is lost for good, no group
// can elect a leader, and no membership change can be made through raft.
// RecoverDataDir rewrites, offline, a survivor's data dir so that the
// survivors alone are the voters of every group and the registry lists
// only them; the node then starts as a working cluster that new nodes join
// as usual. It is hashicorp/raft's RecoverCluster applied to every group,
// plus the registry's entries for the lost nodes, removed through the meta
// group's own log so that the recovered checkpoint holds them already
// gone.
//
// What it costs: a write acknowledged by a majority that did not include
// any survivor is gone, and a survivor's log entries that were never
// committed become committed. Run it only when the lost nodes cannot come
// back; a node that does come back afterwards must be wiped and join anew.

// Survivor names one node that goes on after the outage: an entry of
// peers.json. RaftAddr is only needed when it moved since the registry
// last recorded it.
type Survivor struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr,omitempty"`
}

// RecoverConfig says whose data dir to rewrite and who survives.
type RecoverConfig struct {
	DataDir   string
	Survivors []Survivor
	Logger    hclog.Logger
}

// RecoverReport says what RecoverDataDir did.
type RecoverReport struct {
	NodeID string `json:"node_id"`
	// Voters are the survivors, now the only voters of every group.
	Voters []registry.Node `json:"voters"`
	// Removed are the nodes taken out of the registry.
	Removed []string `json:"removed"`
	// Groups gives, for each group, the last log index the recovered
	// checkpoint covers.
	Groups []RecoveredGroup `json:"groups"`
}

// RecoveredGroup is one group after recovery.
type RecoveredGroup struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"`
}

// ReadSurvivors parses a peers.json file: a JSON array of {"id": ...,
// "raft_addr": ...} objects.
func ReadSurvivors(path string) ([]Survivor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Survivor
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: want a JSON array of {\"id\": \"node1\", \"raft_addr\": \"host:port\"}: %v", path, err)
	}
	return out, nil
}

// RecoverDataDir rewrites the membership of every group in the stopped
// node's data dir rc.DataDir to rc.Survivors. Nothing is changed unless
// every check passes first: the dir is a raftkv node's in the current log
// format, no process has it open, the survivors are known members and
// include this node.
func RecoverDataDir(rc RecoverConfig) (RecoverReport, error) {
	var rep RecoverReport
	if rc.Logger == nil {
		rc.Logger = hclog.NewNullLogger()
	}
	st, err := readNodeState(rc.DataDir)
	if err != nil {
		return rep, err
	}
	rep.NodeID = st.NodeID
	if st.LogFormat != currentLogFormat {
		return rep, fmt.Errorf("data dir %s has log format %d; start the node once with this raftkv (it migrates to format %d), stop it, then recover",
			rc.DataDir, st.LogFormat, currentLogFormat)
	}
	if err := checkSurvivors(rc.Survivors, st.NodeID); err != nil {
		return rep, err
	}
	db, err := logstore.Open(filepath.Join(rc.DataDir, sharedLogFile))
	if err != nil {
		if errors.Is(err, logstore.ErrLocked) {
			return rep, fmt.Errorf("refusing to recover %s: %w; stop the node first", rc.DataDir, err)
		}
		return rep, err
	}
	defer db.Close()

	meta, err := openRecoverGroup(db, rc, MetaGroup)
	if err != nil {
		return rep, err
	}
	reg := registry.New(MetaGroup)
	if err := meta.replay(reg); err != nil {
		return rep, err
	}
	voters, changes, removed, err := survivingMembers(reg.Nodes(), rc.Survivors)
	if err != nil {
		return rep, err
	}
	rep.Voters, rep.Removed = voters, removed
	if err := meta.appendCommands(changes); err != nil {
		return rep, err
	}
	conf := raft.Configuration{}
	for _, v := range voters {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v.ID), Address: raft.ServerAddress(v.RaftAddr)})
	}

	names := []string{MetaGroup}
	for i := 1; i <= st.Shards; i++ {
		names = append(names, fmt.Sprintf("shard-%d", i))
	}
	for _, name := range names {
		g := meta
		var sm raft.FSM = registry.New(name)
		if name != MetaGroup {
			if g, err = openRecoverGroup(db, rc, name); err != nil {
				return rep, err
			}
			sm = fsm.New(name)
		}
		index, err := g.recover(st.NodeID, sm, conf)
		if err != nil {
			return rep, fmt.Errorf("recover %s: %w", name, err)
		}
		rep.Groups = append(rep.Groups, RecoveredGroup{Name: name, Index: index})
		rc.Logger.Info("recovered group", "group", name, "index", index, "voters", len(voters))
	}
	return rep, nil
}

func readNodeState(dataDir string) (nodeState, error) {
	var st nodeState
	b, err := os.ReadFile(filepath.Join(dataDir, "node.json"))
	if errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("%s has no node.json: not the data dir of a raftkv node", dataDir)
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil || st.NodeID == "" {
		return st, fmt.Errorf("%s/node.json does not decode (%v): not the data dir of a raftkv node", dataDir, err)
	}
	return st, nil
}

func checkSurvivors(survivors []Survivor, self string) error {
	if len(survivors) == 0 {
		return errors.New("no survivors given: peers.json must list at least this node")
	}
	seen := map[string]bool{}
	for _, s := range survivors {
		switch {
		case s.ID == "":
			return errors.New("a survivor has no id")
		case seen[s.ID]:
			return fmt.Errorf("survivor %s is listed twice", s.ID)
		}
		seen[s.ID] = true
	}
	if !seen[self] {
		return fmt.Errorf("this data dir is node %s, which the survivors do not include: run recover on the survivors only", self)
	}
	return nil
}

// survivingMembers matches the survivors with the registry's members. It
// returns the voters-to-be, the registry commands that make the registry
// list exactly them (addresses included), and the ids removed.
func survivingMembers(members []registry.Node, survivors []Survivor) ([]registry.Node, [][]byte, []string, error) {
	byID := map[string]registry.Node{}
	for _, m := range members {
		byID[m.ID] = m
	}
	var voters []registry.Node
	var changes [][]byte
	keep := map[string]bool{}
	for _, s := range survivors {
		m, ok := byID[s.ID]
		if !ok {
			return nil, nil, nil, fmt.Errorf("survivor %s is not a member this node knows (members: %s)", s.ID, memberIDs(members))
		}
		if s.RaftAddr != "" && s.RaftAddr != m.RaftAddr {
			m.RaftAddr = s.RaftAddr
			if err := validateMember(m); err != nil {
				return nil, nil, nil, err
			}
			changes = append(changes, registry.EncodeUpsertNode(m))
		}
		voters = append(voters, m)
		keep[s.ID] = true
	}
	var removed []string
	for _, m := range members {
		if !keep[m.ID] {
			removed = append(removed, m.ID)
			changes = append(changes, registry.EncodeRemoveNode(m.ID))
		}
	}
	return voters, changes, removed, nil
}

func memberIDs(members []registry.Node) string {
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	slices.Sort(ids)
	return fmt.Sprint(ids)
}

// recoverGroup is one group's storage, opened offline.
type recoverGroup struct {
	name  string
	logs  *logstore.Store
	snaps *raft.FileSnapshotStore
	rc    RecoverConfig
}

func openRecoverGroup(db *logstore.DB, rc RecoverConfig, name string) (*recoverGroup, error) {
	dir := filepath.Join(rc.DataDir, name)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("group %s: %w", name, err)
	}
	logs, err := db.Group(name)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", name, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotRetain, rc.Logger.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", name, err)
	}
	return &recoverGroup{name: name, logs: logs, snaps: snaps, rc: rc}, nil
}

// replay loads the newest checkpoint into sm and applies the log after it,
// as raft would on start, so the caller can read the state the node had.
func (g *recoverGroup) replay(sm raft.FSM) error {
	var from uint64
	metas, err := g.snaps.List()
	if err != nil {
		return fmt.Errorf("group %s: list checkpoints: %w", g.name, err)
	}
	if len(metas) > 0 {
		_, body, err := g.snaps.Open(metas[0].ID)
		if err != nil {
			return fmt.Errorf("group %s: open checkpoint %s: %w", g.name, metas[0].ID, err)
		}
		if err := sm.Restore(body); err != nil {
			return fmt.Errorf("group %s: load checkpoint %s: %w", g.name, metas[0].ID, err)
		}
		from = metas[0].Index
	}
	last, err := g.logs.LastIndex()
	if err != nil {
		return err
	}
	for i := from + 1; i <= last; i++ {
		var l raft.Log
		if err := g.logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("group %s: read log entry %d: %w", g.name, i, err)
		}
		if l.Type == raft.LogCommand {
			sm.Apply(&l)
		}
	}
	return nil
}

// appendCommands adds commands to the end of the group's log, in the last
// entry's term, for RecoverCluster to apply with the rest.
func (g *recoverGroup) appendCommands(cmds [][]byte) error {
	if len(cmds) == 0 {
		return nil
	}
	last, err := g.logs.LastIndex()
	if err != nil {
		return err
	}
	term, err := g.logs.GetUint64([]byte("CurrentTerm"))
	if err != nil {
		return err
	}
	if last > 0 {
		var l raft.Log
		if err := g.logs.GetLog(last, &l); err != nil {
			return fmt.Errorf("group %s: read log entry %d: %w", g.name, last, err)
		}
		term = l.Term
	} else if metas, err := g.snaps.List(); err == nil && len(metas) > 0 {
		last, term = metas[0].Index, metas[0].Term
	}
	entries := make([]*raft.Log, len(cmds))
	for i, c := range cmds {
		entries[i] = &raft.Log{Index: last + 1 + uint64(i), Term: max(term, 1), Type: raft.LogCommand, Data: c}
	}
	return g.logs.StoreLogs(entries)
}

// recover runs raft's RecoverCluster on the group: its state, the log
// included, goes into one new checkpoint whose configuration is conf.
func (g *recoverGroup) recover(self string, sm raft.FSM, conf raft.Configuration) (uint64, error) {
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(self)
	cfg.Logger = g.rc.Logger.Named(g.name)
	var addr raft.ServerAddress
	for _, s := range conf.Servers {
		if s.ID == cfg.LocalID {
			addr = s.Address
		}
	}
	_, trans := raft.NewInmemTransport(addr)
	defer trans.Close()
	if err := raft.RecoverCluster(cfg, sm, g.logs, g.logs, g.snaps, trans, conf); err != nil {
		return 0, err
	}
	metas, err := g.snaps.List()
	if err != nil || len(metas) == 0 {
		return 0, fmt.Errorf("no checkpoint after recovery: %v", err)
	}
	return metas[0].Index, nil
}
