package cluster_test

import (
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/raftkvtest"
)

// TestBackupLimitRefusesAThirdStagedBackupUntilOneIsDownloaded holds two
// staged backups (the default limit) open on one node: a third is refused
// with ErrOverloaded, in-process and as 429 with Retry-After over HTTP, and
// once one of the two is streamed and closed the next backup goes through.
func TestBackupLimitRefusesAThirdStagedBackupUntilOneIsDownloaded(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 2)
	n := c.Nodes[0]
	if got := cluster.DefaultConfig().MaxConcurrentBackups; got != 2 {
		t.Fatalf("default MaxConcurrentBackups is %d; this test holds 2 open", got)
	}
	var held []*backup.Writer
	for range 2 {
		w, err := n.PrepareBackup(t.Context())
		if err != nil {
			t.Fatalf("backup %d of 2: %v", len(held)+1, err)
		}
		held = append(held, w)
	}
	defer func() {
		for _, w := range held {
			w.Close()
		}
	}()

	if _, err := n.PrepareBackup(t.Context()); !errors.Is(err, cluster.ErrOverloaded) {
		t.Fatalf("third concurrent backup: %v, want ErrOverloaded", err)
	}
	resp, err := http.Get("http://" + n.HTTPAddr + "/v1/backup")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("GET /v1/backup with two staged: %d Retry-After=%q %s, want 429 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	// Streaming a backup closes it and frees its slot.
	if err := held[0].Finish(io.Discard); err != nil {
		t.Fatalf("finish: %v", err)
	}
	w, err := n.PrepareBackup(t.Context())
	if err != nil {
		t.Fatalf("backup after one was downloaded: %v", err)
	}
	held = append(held, w)
	// Closing twice (Finish, then the handler's deferred Close) frees one slot, not two.
	held[0].Close()
	if _, err := n.PrepareBackup(t.Context()); !errors.Is(err, cluster.ErrOverloaded) {
		t.Fatalf("backup with two staged after a double close: %v, want ErrOverloaded", err)
	}
}
