package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/logstore"
	"github.com/raftkv/raftkv/raftkvtest"
)

// A data dir written before the shared log file (one raft-boltdb file per
// group, no log_format in node.json) is moved into it on start, and
// nothing written before is lost.
func TestADataDirWithALogFilePerGroupIsMigrated(t *testing.T) {
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
	groups := raftkvtest.Groups(2)
	toPerGroupFiles(t, dir, groups)

	c.Restart(0)
	c.WaitReady()
	cl = client.New([]string{c.Nodes[0].HTTPAddr}, client.WithTimeout(10*time.Second))
	for i := 0; i < 20; i++ {
		v, err := cl.Get(ctx, fmt.Sprint("k", i))
		if err != nil || string(v.Value) != fmt.Sprint("v", i) {
			t.Fatalf("k%d after the migration: %q %v", i, v.Value, err)
		}
	}
	for _, g := range groups {
		if _, err := os.Stat(filepath.Join(dir, g, "raft.db")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s/raft.db is still there after the migration: %v", g, err)
		}
	}
	var st map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, "node.json"))
	if err := json.Unmarshal(data, &st); err != nil || st["log_format"] != float64(2) {
		t.Fatalf("node.json after the migration: %s", data)
	}
}

// toPerGroupFiles rewrites a stopped node's data dir in the old layout.
func toPerGroupFiles(t *testing.T, dir string, groups []string) {
	t.Helper()
	shared := filepath.Join(dir, "raft-log.db")
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
	if err := os.Remove(shared); err != nil {
		t.Fatal(err)
	}
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
	data, _ = json.Marshal(st)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
