package mux

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// logFSM records applied entries; enough to see replication happen.
type logFSM struct {
	mu      sync.Mutex
	entries [][]byte
}

func (f *logFSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, append([]byte(nil), l.Data...))
	return nil
}

func (f *logFSM) has(data []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.entries {
		if bytes.Equal(e, data) {
			return true
		}
	}
	return false
}

func (f *logFSM) Snapshot() (raft.FSMSnapshot, error) { return emptySnapshot{}, nil }
func (f *logFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type emptySnapshot struct{}

func (emptySnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (emptySnapshot) Release()                             {}

// TestRaftGroupsShareOnePort runs three 3-node raft groups where node i of
// every group uses the same mux, so each node has exactly one port.
func TestRaftGroupsShareOnePort(t *testing.T) {
	runRaftGroups(t, []string{"meta", "shard-1", "shard-2"}, func(int) *Mux {
		return newTestMux(t, defaultHeaderTimeout, nil)
	})
}

// TestRaftGroupsShareOnePortOverTLS is the same with every node holding a
// certificate from one cluster CA.
func TestRaftGroupsShareOnePortOverTLS(t *testing.T) {
	issue := testCA(t)
	runRaftGroups(t, []string{"meta", "shard-1"}, func(i int) *Mux {
		server, client := issue(fmt.Sprintf("node%d", i))
		return newTLSMux(t, server, client, 0, nil)
	})
}

// runRaftGroups starts a 3-node raft group per name, node i of every group
// on the mux newMux(i) returns, and checks that each group elects a leader,
// replicates an entry and knows its nodes by their mux addresses.
func runRaftGroups(t *testing.T, groups []string, newMux func(i int) *Mux) {
	const nodes = 3
	quiet := hclog.NewNullLogger()

	muxes := make([]*Mux, nodes)
	for i := range muxes {
		muxes[i] = newMux(i)
	}
	servers := make([]raft.Server, nodes)
	for i, m := range muxes {
		servers[i] = raft.Server{
			ID:      raft.ServerID(fmt.Sprintf("node-%d", i)),
			Address: raft.ServerAddress(m.Addr().String()),
		}
	}

	type replica struct {
		r   *raft.Raft
		fsm *logFSM
	}
	cluster := map[string][]replica{}
	for _, g := range groups {
		for i, m := range muxes {
			layer := newTestLayer(t, m, g)
			trans := raft.NewNetworkTransportWithLogger(layer, 3, time.Second, quiet)
			t.Cleanup(func() {
				_ = trans.Close()
				trans.CloseStreams() // drop pooled outbound conns so peers' readers end
			})

			conf := raft.DefaultConfig()
			conf.LocalID = servers[i].ID
			conf.HeartbeatTimeout = 100 * time.Millisecond
			conf.ElectionTimeout = 100 * time.Millisecond
			conf.LeaderLeaseTimeout = 50 * time.Millisecond
			conf.CommitTimeout = 5 * time.Millisecond
			conf.Logger = quiet

			fsm := &logFSM{}
			logs, stable := raft.NewInmemStore(), raft.NewInmemStore()
			snaps := raft.NewInmemSnapshotStore()
			// Bootstrapping every node with the same configuration is allowed
			// and avoids depending on which one starts first.
			if err := raft.BootstrapCluster(conf, logs, stable, snaps, trans,
				raft.Configuration{Servers: servers}); err != nil {
				t.Fatalf("%s node %d: bootstrap: %v", g, i, err)
			}
			r, err := raft.NewRaft(conf, fsm, logs, stable, snaps, trans)
			if err != nil {
				t.Fatalf("%s node %d: NewRaft: %v", g, i, err)
			}
			t.Cleanup(func() { _ = r.Shutdown().Error() })
			cluster[g] = append(cluster[g], replica{r, fsm})
		}
	}

	for _, g := range groups {
		data := []byte("hello " + g)
		var leader *raft.Raft
		waitFor(t, 10*time.Second, g+" to elect a leader and commit", func() bool {
			leader = nil
			for _, rep := range cluster[g] {
				if rep.r.State() == raft.Leader {
					leader = rep.r
				}
			}
			// A leader can step down between the check and the Apply;
			// then we simply try again.
			return leader != nil && leader.Apply(data, time.Second).Error() == nil
		})
		waitFor(t, 10*time.Second, g+" to replicate to every node", func() bool {
			for _, rep := range cluster[g] {
				if !rep.fsm.has(data) {
					return false
				}
			}
			return true
		})
		// Every node's address in this group is its mux's single port, and
		// leaders are known by those addresses.
		for i, rep := range cluster[g] {
			if got := rep.r.String(); !strings.Contains(got, muxes[i].Addr().String()) {
				t.Errorf("%s node %d: %s does not use its mux address %s", g, i, got, muxes[i].Addr())
			}
		}
		// Leadership may move under load, so poll rather than sample once.
		waitFor(t, 10*time.Second, g+" nodes to know their leader's mux address", func() bool {
			for _, rep := range cluster[g] {
				if addr, _ := rep.r.LeaderWithID(); !isServer(servers, addr) {
					return false
				}
			}
			return true
		})
	}
}

func isServer(servers []raft.Server, addr raft.ServerAddress) bool {
	for _, s := range servers {
		if s.Address == addr {
			return true
		}
	}
	return false
}
