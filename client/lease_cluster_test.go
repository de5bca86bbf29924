package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/raftkvtest"
)

func TestLeasesAgainstARealCluster(t *testing.T) {
	rc := raftkvtest.NewCluster(t, 3, 2)
	var eps []string
	for _, n := range rc.Nodes {
		eps = append(eps, n.HTTPAddr)
	}
	c := client.New(eps, client.WithTimeout(30*time.Second))
	ctx := context.Background()

	l, err := c.Grant(ctx, 10*time.Second)
	if err != nil || l.ID == "" || l.TTL != 10*time.Second {
		t.Fatalf("grant: %+v, %v", l, err)
	}
	if _, err := c.Put(ctx, "svc/a", []byte("1"), client.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "svc/b", []byte("2"), client.WithLease(l.ID), client.IfAbsent()); err != nil {
		t.Fatal(err)
	}
	// Every node shows the key's lease: the shard's leader from its own
	// replica, the others through the forwarded read.
	for _, n := range rc.Nodes {
		v, err := client.New([]string{n.HTTPAddr}).Get(ctx, "svc/a")
		if err != nil || v.Lease != l.ID {
			t.Fatalf("get svc/a on %s: lease %q, %v; want %s", n.ID, v.Lease, err, l.ID)
		}
	}
	info, err := c.LeaseInfo(ctx, l.ID)
	if err != nil || info.KeyCount != 2 || len(info.Keys) != 2 || info.Remaining <= 0 || info.TTL != l.TTL {
		t.Fatalf("info: %+v, %v", info, err)
	}
	if ka, err := c.KeepAlive(ctx, l.ID); err != nil || ka.TTL != l.TTL {
		t.Fatalf("keepalive: %+v, %v", ka, err)
	}
	if list, err := c.Leases(ctx); err != nil || len(list) != 1 || list[0].ID != l.ID {
		t.Fatalf("leases: %+v, %v", list, err)
	}

	k, err := c.KeepLeaseAlive(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Revoked under the keeper: it notices at its next keepalive.
	if n, err := c.Revoke(ctx, l.ID); err != nil || n != 2 {
		t.Fatalf("revoke: %d, %v", n, err)
	}
	select {
	case <-k.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the keeper did not notice the revoke")
	}
	if !errors.Is(k.Err(), client.ErrLeaseLost) {
		t.Fatalf("keeper error %v, want ErrLeaseLost", k.Err())
	}
	if _, err := c.Get(ctx, "svc/a"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get after revoke: %v", err)
	}
	if _, err := c.Put(ctx, "svc/c", []byte("3"), client.WithLease(l.ID)); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("put with a revoked lease: %v, want ErrNotFound", err)
	}
	if _, err := c.KeepAlive(ctx, l.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("keepalive of a revoked lease: %v", err)
	}
	if _, err := c.Grant(ctx, time.Second); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("grant of 1s: %v, want ErrBadRequest", err)
	}

	// A stopped keeper ends quietly.
	l2, err := c.Grant(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := c.KeepLeaseAlive(ctx, l2.ID)
	if err != nil {
		t.Fatal(err)
	}
	k2.Stop()
	if k2.Err() != nil {
		t.Fatalf("stopped keeper: %v", k2.Err())
	}
}
