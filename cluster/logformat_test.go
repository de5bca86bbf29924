package cluster_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/logstore"
	"github.com/raftkv/raftkv/raftkvtest"
)

// A data dir written before the shared log file (one raft-boltdb file per
// group, no log_format in node.json) is moved into it on start, and
// nothing written before is lost.
func TestADataDirWithALogFilePerGroupIsMigrated(t *testing.T) {
	groups := raftkvtest.Groups(2)
	dir := migrateAndCheck(t, func(dir string) { toPerGroupFiles(t, dir, groups) })
	for _, g := range groups {
		if _, err := os.Stat(filepath.Join(dir, g, "raft.db")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s/raft.db is still there after the migration: %v", g, err)
		}
	}
}

// A data dir of log format 2 (every group in one bbolt file) is moved into
// the write-ahead log on start, and nothing written before is lost.
func TestADataDirWithASharedBoltLogIsMigrated(t *testing.T) {
	dir := migrateAndCheck(t, func(dir string) { toSharedBoltFile(t, dir, raftkvtest.Groups(2)) })
	if _, err := os.Stat(filepath.Join(dir, "raft-log.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("raft-log.db is still there after the migration: %v", err)
	}
}

// migrateAndCheck writes 20 keys to a 1-node cluster, stops it, rewrites
// its data dir in an older layout with toOld, starts it again and checks
// that every key reads back and node.json records the current format. It
// returns the data dir.
func migrateAndCheck(t *testing.T, toOld func(dir string)) string {
	t.Helper()
	c := raftkvtest.NewCluster(t, 1, 2)
	ctx := context.Background()
	cl := client.New([]string{c.Nodes[0].HTTPAddr}, client.WithTimeout(10*time.Second))
	for i := 0; i < 20; i++ {
		if _, err := cl.Put(ctx, fmt.Sprint("k", i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop(0)
	dir := c.Nodes[0].DataDir()
	toOld(dir)

	c.Restart(0)
	c.WaitReady()
	cl = client.New([]string{c.Nodes[0].HTTPAddr}, client.WithTimeout(10*time.Second))
	for i := 0; i < 20; i++ {
		v, err := cl.Get(ctx, fmt.Sprint("k", i))
		if err != nil || string(v.Value) != fmt.Sprint("v", i) {
			t.Fatalf("k%d after the migration: %q %v", i, v.Value, err)
		}
	}
	if got := logFormat(t, dir); got != float64(3) {
		t.Fatalf("node.json has log_format %v after the migration, want 3", got)
	}
	return dir
}

func logFormat(t *testing.T, dir string) any {
	t.Helper()
	var st map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, "node.json"))
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	return st["log_format"]
}

// toSharedBoltFile rewrites a stopped node's data dir in log format 2: a
// bbolt file with a bucket per group holding "logs" (big-endian index keys)
// and "stable".
func toSharedBoltFile(t *testing.T, dir string, groups []string) {
	t.Helper()
	wal := filepath.Join(dir, "raft-wal")
	db, err := logstore.Open(wal)
	if err != nil {
		t.Fatal(err)
	}
	out, err := bolt.Open(filepath.Join(dir, "raft-log.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = out.Update(func(tx *bolt.Tx) error {
		for _, g := range groups {
			from, err := db.Group(g)
			if err != nil {
				return err
			}
			root, err := tx.CreateBucket([]byte(g))
			if err != nil {
				return err
			}
			logs, _ := root.CreateBucket([]byte("logs"))
			stable, _ := root.CreateBucket([]byte("stable"))
			first, _ := from.FirstIndex()
			last, _ := from.LastIndex()
			for i := first; first > 0 && i <= last; i++ {
				var l raft.Log
				if err := from.GetLog(i, &l); err != nil {
					return err
				}
				if err := logs.Put(binary.BigEndian.AppendUint64(nil, i), logstore.EncodeEntry(&l)); err != nil {
					return err
				}
			}
			for _, k := range []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand"} {
				if v, err := from.Get([]byte(k)); err == nil {
					if err := stable.Put([]byte(k), v); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out.Close()
	db.Close()
	if err := os.RemoveAll(wal); err != nil {
		t.Fatal(err)
	}
	setLogFormat(t, dir, 2)
}

// setLogFormat rewrites node.json's log_format (0 removes it).
func setLogFormat(t *testing.T, dir string, format int) {
	t.Helper()
	path := filepath.Join(dir, "node.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	delete(st, "log_format")
	if format != 0 {
		st["log_format"] = format
	}
	data, _ = json.Marshal(st)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// toPerGroupFiles rewrites a stopped node's data dir in the old layout.
func toPerGroupFiles(t *testing.T, dir string, groups []string) {
	t.Helper()
	shared := filepath.Join(dir, "raft-wal")
	db, err := logstore.Open(shared)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		from, err := db.Group(g)
		if err != nil {
			t.Fatal(err)
		}
		to, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, g, "raft.db")})
		if err != nil {
			t.Fatal(err)
		}
		first, _ := from.FirstIndex()
		last, _ := from.LastIndex()
		for i := first; first > 0 && i <= last; i++ {
			var l raft.Log
			if err := from.GetLog(i, &l); err != nil {
				t.Fatal(err)
			}
			if err := to.StoreLog(&l); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand"} {
			if v, err := from.Get([]byte(k)); err == nil {
				if err := to.Set([]byte(k), v); err != nil {
					t.Fatal(err)
				}
			}
		}
		to.Close()
	}
	db.Close()
	if err := os.RemoveAll(shared); err != nil {
		t.Fatal(err)
	}
	setLogFormat(t, dir, 0)
}
