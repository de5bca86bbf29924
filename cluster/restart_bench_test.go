package cluster

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/logstore"
	"github.com/raftkv/raftkv/registry"
)

// benchDataDir builds, without timing it, the data dir of a single-node,
// single-shard cluster whose shard holds `keys` keys of 100 B in its
// checkpoint and `logEntries` more writes in the log after it.
func benchDataDir(b *testing.B, keys, logEntries int) (string, Config) {
	b.Helper()
	dir := b.TempDir()
	rc := RestoreConfig{DataDir: dir, NodeID: "bench1", RaftAddr: "bench1:7000", HTTPAddr: "127.0.0.1:1", Logger: hclog.NewNullLogger()}
	self := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "bench1", Address: "bench1:7000"}}}
	value := make([]byte, 100)
	kv := fsm.New("shard-1")
	for i := 1; i <= keys; i++ {
		kv.Apply(&raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: fsm.EncodePut(fmt.Sprintf("key-%08d", i), value, fsm.Condition{})})
	}
	snap, _ := kv.Snapshot()
	if err := installCheckpoint(rc, "shard-1", uint64(max(keys, 1)), 1, self, snap.Persist); err != nil {
		b.Fatal(err)
	}
	db, err := logstore.Open(filepath.Join(dir, sharedLogFile))
	if err != nil {
		b.Fatal(err)
	}
	store, err := db.Group("shard-1")
	if err != nil {
		b.Fatal(err)
	}
	var logs []*raft.Log
	for i := 1; i <= logEntries; i++ {
		idx := uint64(keys + i)
		logs = append(logs, &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: fsm.EncodePut(fmt.Sprintf("log-%08d", i), value, fsm.Condition{})})
		if len(logs) == 1000 || i == logEntries {
			if err := store.StoreLogs(logs); err != nil {
				b.Fatal(err)
			}
			logs = logs[:0]
		}
	}
	db.Close()
	reg := registry.New(MetaGroup)
	reg.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: registry.EncodeInit("bench", 1)})
	reg.Apply(&raft.Log{Index: 2, Term: 1, Type: raft.LogCommand, Data: registry.EncodeUpsertNode(registry.Node{ID: "bench1", HTTPAddr: rc.HTTPAddr, RaftAddr: rc.RaftAddr})})
	rsnap, _ := reg.Snapshot()
	if err := installCheckpoint(rc, MetaGroup, 2, 1, self, rsnap.Persist); err != nil {
		b.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "node.json"), nodeState{NodeID: "bench1", ClusterID: "bench", Shards: 1, LogFormat: currentLogFormat}); err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.RaftAddr, cfg.HTTPAddr, cfg.Shards = "bench1", dir, rc.RaftAddr, rc.HTTPAddr, 1
	cfg.SnapshotThreshold, cfg.SnapshotInterval = 1<<40, time.Hour
	cfg.NewTransport = func(group string) (raft.Transport, error) {
		_, t := raft.NewInmemTransport("bench1:7000")
		return t, nil
	}
	cfg.NewRPCLayer = func() (raft.StreamLayer, error) { return newLoopbackLayer() }
	return dir, cfg
}

// startAndRecover starts the node and waits until the shard has loaded its
// checkpoint and replayed its log.
func startAndRecover(b *testing.B, cfg Config) (*Node, RecoveryStatus) {
	b.Helper()
	n, err := New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	g := n.groups["shard-1"]
	for g.recovery.status().RecoveryMs < 0 {
		time.Sleep(time.Millisecond)
	}
	return n, g.recovery.status()
}

// BenchmarkRestart measures a restart (checkpoint load + log replay) for a
// shard of 10k, 100k and 1M keys of 100 B with 10k entries in the log.
//
//	go test -run x -bench Restart -benchtime 3x ./cluster/
func BenchmarkRestart(b *testing.B) {
	for _, keys := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			_, cfg := benchDataDir(b, keys, 10_000)
			var restoreMs, totalMs int64
			b.ResetTimer()
			for range b.N {
				n, rec := startAndRecover(b, cfg)
				restoreMs += rec.RestoreMs
				totalMs += rec.RecoveryMs
				b.StopTimer()
				n.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(restoreMs)/float64(b.N), "checkpoint-ms")
			b.ReportMetric(float64(totalMs-restoreMs)/float64(b.N), "replay-ms")
		})
	}
}

// BenchmarkWriteLatencyDuringCheckpoint writes one key at a time to a node
// holding 1M keys, first alone, then while checkpoints of the whole shard
// are written, and reports the worst and median write latency of each.
//
//	go test -run x -bench WriteLatencyDuringCheckpoint -benchtime 1x ./cluster/
func BenchmarkWriteLatencyDuringCheckpoint(b *testing.B) {
	_, cfg := benchDataDir(b, 1_000_000, 0)
	n, _ := startAndRecover(b, cfg)
	defer n.Close()
	g := n.groups["shard-1"]
	for !g.isLeader() {
		time.Sleep(time.Millisecond)
	}
	// write puts keys one at a time until stop is closed (or count is
	// reached, when stop is nil) and returns the sorted latencies.
	write := func(count int, prefix string, stop <-chan struct{}) []time.Duration {
		var lat []time.Duration
		for i := 0; ; i++ {
			if stop == nil && i == count {
				break
			}
			if stop != nil {
				select {
				case <-stop:
					sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
					return lat
				default:
				}
			}
			start := time.Now()
			if _, err := g.apply(context.Background(), fsm.EncodePut(fmt.Sprintf("%s-%d", prefix, i), make([]byte, 100), fsm.Condition{})); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return lat
	}
	b.ResetTimer()
	for range b.N {
		base := write(1000, "base", nil)
		finished := make(chan struct{})
		var wg sync.WaitGroup
		checkpoints := 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(finished)
			for checkpoints < 2 {
				time.Sleep(20 * time.Millisecond) // let writes add entries to checkpoint
				if _, err := g.checkpoint(); err != nil {
					b.Error(err)
					return
				}
				checkpoints++
			}
		}()
		during := write(0, "during", finished)
		wg.Wait()
		b.ReportMetric(float64(base[len(base)-1].Microseconds())/1000, "max-ms-alone")
		b.ReportMetric(float64(during[len(during)-1].Microseconds())/1000, "max-ms-checkpointing")
		b.ReportMetric(float64(base[len(base)/2].Microseconds())/1000, "p50-ms-alone")
		b.ReportMetric(float64(during[len(during)/2].Microseconds())/1000, "p50-ms-checkpointing")
		b.ReportMetric(float64(checkpoints), "checkpoints")
		b.ReportMetric(float64(len(during)), "writes-checkpointing")
	}
}

// loopbackLayer is a raft.StreamLayer on a 127.0.0.1 port, for a node whose
// raft groups run over in-memory transports.
type loopbackLayer struct{ net.Listener }

func newLoopbackLayer() (*loopbackLayer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &loopbackLayer{ln}, nil
}

func (l *loopbackLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}
