package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/raftkvtest"
)

// Every call the client offers beyond keys, against a real in-process
// cluster of three nodes and two shards.
func TestClusterOperationsAgainstARealCluster(t *testing.T) {
	rc := raftkvtest.NewCluster(t, 3, 2)
	var eps []string
	for _, n := range rc.Nodes {
		eps = append(eps, n.HTTPAddr)
	}
	c := client.New(eps, client.WithTimeout(30*time.Second))
	ctx := context.Background()

	t.Run("the record of a cross-shard transaction", func(t *testing.T) {
		a, b := keyIn("rec/a", "shard-1", 2), keyIn("rec/b", "shard-2", 2)
		res, err := c.Txn(ctx, client.Txn{Success: []client.TxnOp{client.PutOp(a, []byte("1")), client.PutOp(b, []byte("2"))}})
		if err != nil || res.Mode != "2pc" || res.ID == "" {
			t.Fatalf("txn: %+v, %v", res, err)
		}
		// Every participant applies the decision in the background; the
		// record says so once they have.
		raftkvtest.Eventually(t, 10*time.Second, func() error {
			rec, err := c.TxnRecord(ctx, res.ID)
			if err != nil {
				return err
			}
			if rec.ID != res.ID || rec.State != client.TxnCommitted || !rec.Succeeded || len(rec.Participants) != 2 ||
				rec.StartedAt.IsZero() || rec.DecidedAt.Before(rec.StartedAt) {
				t.Fatalf("record = %+v", rec)
			}
			if !rec.Resolved {
				return fmt.Errorf("not resolved yet: %+v", rec)
			}
			return nil
		})
		if _, err := c.TxnRecord(ctx, "shard-1.00000000deadbeef"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("unknown id: %v, want ErrNotFound", err)
		}
		if _, err := c.TxnRecord(ctx, ""); !errors.Is(err, client.ErrBadRequest) || client.Sent(err) {
			t.Fatalf("empty id: %v, want ErrBadRequest before sending", err)
		}
	})

	t.Run("a failed If-Match names the current revision", func(t *testing.T) {
		put, err := c.Put(ctx, "cas", []byte("v1"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Put(ctx, "cas", []byte("v2"), client.IfMatch(put.Revision+1000))
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.CurrentRevision != put.Revision || apiErr.Indeterminate {
			t.Fatalf("412: %#v, want current revision %d", err, put.Revision)
		}
	})

	t.Run("checkpoint now", func(t *testing.T) {
		groups, err := c.At(eps[1]).Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(groups) != 3 || groups[0].Name != "meta" || groups[0].Index == 0 {
			t.Fatalf("checkpoint = %+v, want meta, shard-1, shard-2", groups)
		}
		st, err := c.At(eps[1]).Cluster(ctx, client.NoProbe())
		if err != nil {
			t.Fatal(err)
		}
		meta, _ := st.Group("meta")
		if st.Node != "node2" || meta.LastSnapshotIndex < groups[0].Index {
			t.Fatalf("after the checkpoint node %s reports meta snapshot index %d, want >= %d", st.Node, meta.LastSnapshotIndex, groups[0].Index)
		}
	})

	t.Run("status with and without probes", func(t *testing.T) {
		probed, err := c.Cluster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := c.Cluster(ctx, client.NoProbe())
		if err != nil {
			t.Fatal(err)
		}
		for i := range probed.Nodes {
			if r := probed.Nodes[i].Reachable; r == nil || !*r {
				t.Errorf("probed: %s reachable = %v", probed.Nodes[i].ID, r)
			}
			if plain.Nodes[i].Reachable != nil {
				t.Errorf("without probes: %s reachable is set", plain.Nodes[i].ID)
			}
		}
	})

	t.Run("overview", func(t *testing.T) {
		ov, err := c.At(eps[0]).Overview(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ov.Node != "node1" || ov.At.IsZero() || len(ov.Nodes) != 3 {
			t.Fatalf("overview = %+v", ov)
		}
		for _, n := range ov.Nodes {
			if !n.Reachable || n.Status == nil || n.Status.Node != n.ID || len(n.Status.Groups) != 3 {
				t.Errorf("overview of %s: reachable %v, status %+v, error %q", n.ID, n.Reachable, n.Status, n.Error)
			}
		}
	})

	t.Run("backup to a file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "backup.tar")
		rep, err := c.SaveBackup(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		onDisk, err := backup.Inspect(path)
		if err != nil || !rep.OK || len(rep.Groups) != 3 || rep.Manifest.ClusterID != onDisk.Manifest.ClusterID {
			t.Fatalf("report %+v; the file inspects as %+v, %v", rep, onDisk, err)
		}
		if _, err := os.Stat(path + ".partial"); !os.IsNotExist(err) {
			t.Fatalf("the temporary file is left: %v", err)
		}
	})

	t.Run("health", func(t *testing.T) {
		for _, ep := range eps {
			if err := c.At(ep).Live(ctx); err != nil {
				t.Errorf("live %s: %v", ep, err)
			}
			if err := c.At(ep).Ready(ctx); err != nil {
				t.Errorf("ready %s: %v", ep, err)
			}
		}
	})

	t.Run("transfer leadership", func(t *testing.T) {
		from := rc.Leader("shard-1")
		to := rc.Nodes[(from+1)%3].ID
		if err := c.TransferLeadership(ctx, "shard-1", to); err != nil {
			t.Fatal(err)
		}
		raftkvtest.Eventually(t, 10*time.Second, func() error {
			if got := rc.Nodes[rc.Leader("shard-1")].ID; got != to {
				return fmt.Errorf("shard-1 is led by %s, want %s", got, to)
			}
			return nil
		})
	})
}

// Get and List report the revision that created a key; List reads stale
// when asked.
func TestCreateRevisionAndStaleList(t *testing.T) {
	rc := raftkvtest.NewCluster(t, 3, 1)
	c := client.New([]string{rc.Nodes[0].HTTPAddr}, client.WithTimeout(30*time.Second))
	ctx := context.Background()
	first, err := c.Put(ctx, "cr/k", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "cr/k", []byte("2")); err != nil {
		t.Fatal(err)
	}
	v, err := c.Get(ctx, "cr/k")
	if err != nil || v.CreateRevision != first.Revision || v.Revision <= first.Revision || v.Version != 2 {
		t.Fatalf("get = %+v, %v; want create revision %d", v, err, first.Revision)
	}
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		page, err := c.At(rc.Nodes[2].HTTPAddr).List(ctx, "cr/", "", 0, client.Stale())
		if err != nil {
			return err
		}
		if len(page.Items) != 1 || page.Items[0].CreateRevision != first.Revision || page.Items[0].Revision != v.Revision {
			return fmt.Errorf("stale list on node3 = %+v", page.Items)
		}
		return nil
	})
}
