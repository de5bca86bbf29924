package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/raftkvtest"
)

const leaseShards = 3

func leaseCluster(t *testing.T) (*raftkvtest.Cluster, *raftkvtest.ManualClock) {
	t.Helper()
	clk := &raftkvtest.ManualClock{}
	c := raftkvtest.NewClusterWith(t, 3, leaseShards, func(cfg *cluster.Config) { cfg.Clock = clk })
	return c, clk
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func grant(t *testing.T, n *raftkvtest.Node, ttl time.Duration) cluster.Lease {
	t.Helper()
	l, err := n.GrantLease(ctx5(t), ttl)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	return l
}

func leasePut(t *testing.T, n *raftkvtest.Node, key, lease string) cluster.KVResult {
	t.Helper()
	res, err := n.PutWithLease(ctx5(t), key, []byte("v"), fsm.Condition{}, lease)
	if err != nil {
		t.Fatalf("put %s with lease %s: %v", key, lease, err)
	}
	return res
}

// leasedKeys returns keys covering every shard, two per shard.
func leasedKeys(t *testing.T) []string {
	var keys []string
	for i := 1; i <= leaseShards; i++ {
		for j := range 2 {
			keys = append(keys, keyOnShard(t, fmt.Sprintf("leased%d", j), fmt.Sprintf("shard-%d", i), leaseShards))
		}
	}
	return keys
}

// waitPasses waits until every node's lease loop has made two more passes,
// so whatever it would decide at the clock's current time is decided.
func waitPasses(t *testing.T, c *raftkvtest.Cluster) {
	t.Helper()
	start := make([]uint64, len(c.Nodes))
	for i, n := range c.Nodes {
		start[i] = n.LeaseExpiryPasses()
	}
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		for i, n := range c.Nodes {
			if n.LeaseExpiryPasses() < start[i]+2 {
				return fmt.Errorf("%s has not made two passes yet", n.ID)
			}
		}
		return nil
	})
}

func waitGone(t *testing.T, c *raftkvtest.Cluster, keys ...string) {
	t.Helper()
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		for _, k := range keys {
			if got := mustGet(t, c.Nodes[0], k); got != "<absent>" {
				return fmt.Errorf("%s is still %q", k, got)
			}
		}
		return nil
	})
}

// TestALeaseExpiryDeletesItsKeysOnEveryShardAtOnce: keys of one lease on
// every shard, read together by cross-shard transactions while the lease
// expires; no transaction may see some of them and not the others.
func TestALeaseExpiryDeletesItsKeysOnEveryShardAtOnce(t *testing.T) {
	c, clk := leaseCluster(t)
	l := grant(t, c.Nodes[0], cluster.MinLeaseTTL)
	keys := leasedKeys(t)
	for i, k := range keys {
		leasePut(t, c.Nodes[i%3], k, l.ID)
	}
	mustPut(t, c.Nodes[1], "plain", "kept")
	leasePut(t, c.Nodes[1], "detached", l.ID)
	mustPut(t, c.Nodes[2], "detached", "no lease now")
	got, err := c.Nodes[2].GetLease(ctx5(t), l.ID)
	if err != nil || len(got.Keys) != len(keys) || got.TTL != cluster.MinLeaseTTL {
		t.Fatalf("lease before expiry: %+v, %v", got, err)
	}

	var reads []fsm.Op
	for _, k := range keys {
		reads = append(reads, fsm.Op{Kind: fsm.OpGet, Key: k})
	}
	var mu sync.Mutex
	var seen []int // how many of the keys each transaction found
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := c.Nodes[i%3].Txn(ctx, cluster.TxnRequest{Success: reads})
			cancel()
			if err != nil {
				continue // a conflict with the revocation; try again
			}
			found := 0
			for _, r := range res.Results {
				if r.Found {
					found++
				}
			}
			mu.Lock()
			seen = append(seen, found)
			mu.Unlock()
		}
	}()
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return errors.New("no read before the expiry yet")
		}
		return nil
	})
	clk.Advance(cluster.MinLeaseTTL + time.Second)
	waitGone(t, c, keys...)
	// A few reads after the expiry too.
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 || seen[len(seen)-1] != 0 {
			return errors.New("no read after the expiry yet")
		}
		return nil
	})
	close(stop)
	<-done
	for i, n := range seen {
		if n != 0 && n != len(keys) {
			t.Fatalf("read %d saw %d of the lease's %d keys: %v", i, n, len(keys), seen)
		}
	}
	if mustGet(t, c.Nodes[0], "plain") != "kept" || mustGet(t, c.Nodes[0], "detached") != "no lease now" {
		t.Fatal("the expiry deleted a key not attached to the lease")
	}
	if _, err := c.Nodes[0].GetLease(ctx5(t), l.ID); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("expired lease: %v, want ErrNotFound", err)
	}
	if _, err := c.Nodes[0].PutWithLease(ctx5(t), "late", []byte("v"), fsm.Condition{}, l.ID); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("put with the expired lease: %v, want ErrNotFound", err)
	}
	if mustGet(t, c.Nodes[0], "late") != "<absent>" {
		t.Fatal("a put with an expired lease wrote its key")
	}
	noTxnState(t, c, leaseShards)
}

// TestALeaderChangeDoesNotExpireALeaseEarly: 7 s into a 10 s lease its
// home shard changes leader; 7 s later (14 s after the grant, 7 s after
// the takeover) the lease is still there; it expires once the new leader's
// full countdown has run.
func TestALeaderChangeDoesNotExpireALeaseEarly(t *testing.T) {
	c, clk := leaseCluster(t)
	l := grant(t, c.Nodes[0], 10*time.Second)
	home, _, _ := strings.Cut(l.ID, ".")
	keys := leasedKeys(t)
	for _, k := range keys {
		leasePut(t, c.Nodes[0], k, l.ID)
	}
	clk.Advance(7 * time.Second)
	waitPasses(t, c)
	old := c.Leader(home)
	c.MakeLeader(home, (old+1)%3)
	waitPasses(t, c)
	clk.Advance(7 * time.Second)
	waitPasses(t, c)
	got, err := c.Nodes[2].GetLease(ctx5(t), l.ID)
	if err != nil || got.KeyCount != len(keys) {
		t.Fatalf("lease after the leader change: %+v, %v", got, err)
	}
	if got.Remaining <= 0 || got.Remaining > 10*time.Second {
		t.Fatalf("remaining %v after the takeover, want within (0, 10s]", got.Remaining)
	}
	for _, k := range keys {
		if mustGet(t, c.Nodes[1], k) == "<absent>" {
			t.Fatalf("%s expired early", k)
		}
	}
	clk.Advance(4 * time.Second)
	waitGone(t, c, keys...)
}

func TestKeepAliveHoldsALeaseAndRevokeEndsIt(t *testing.T) {
	c, clk := leaseCluster(t)
	l := grant(t, c.Nodes[1], cluster.MinLeaseTTL)
	keys := leasedKeys(t)
	for _, k := range keys {
		leasePut(t, c.Nodes[2], k, l.ID)
	}
	for range 3 {
		clk.Advance(4 * time.Second)
		ka, err := c.Nodes[0].KeepAliveLease(ctx5(t), l.ID)
		if err != nil || ka.TTL != cluster.MinLeaseTTL {
			t.Fatalf("keepalive: %+v, %v", ka, err)
		}
	}
	waitPasses(t, c)
	if mustGet(t, c.Nodes[0], keys[0]) == "<absent>" {
		t.Fatal("a kept-alive lease expired")
	}
	list, err := c.Nodes[2].ListLeases(ctx5(t))
	if err != nil || len(list) != 1 || list[0].ID != l.ID {
		t.Fatalf("list: %+v, %v", list, err)
	}
	n, err := c.Nodes[2].RevokeLease(ctx5(t), l.ID)
	if err != nil || n != len(keys) {
		t.Fatalf("revoke: %d keys, %v; want %d", n, err, len(keys))
	}
	for _, k := range keys {
		if mustGet(t, c.Nodes[1], k) != "<absent>" {
			t.Fatalf("%s outlived the revoke", k)
		}
	}
	if _, err := c.Nodes[0].KeepAliveLease(ctx5(t), l.ID); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("keepalive after revoke: %v", err)
	}
	if _, err := c.Nodes[0].RevokeLease(ctx5(t), l.ID); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	noTxnState(t, c, leaseShards)
}

// TestAStaleLockHolderIsFenced is the lock recipe of docs/leases.md: the
// lock is a key created only if absent, with the holder's lease; the
// fencing token is its revision. A holder whose lease expired and who does
// not know it writes with its old token and is refused.
func TestAStaleLockHolderIsFenced(t *testing.T) {
	c, clk := leaseCluster(t)
	acquire := func(n *raftkvtest.Node, who, lease string) (uint64, error) {
		res, err := n.PutWithLease(ctx5(t), "locks/job", []byte(who), fsm.Condition{Kind: fsm.CondAbsent}, lease)
		return res.KV.ModRevision, err
	}
	guardedWrite := func(n *raftkvtest.Node, token uint64, value string) bool {
		t.Helper()
		res, err := n.Txn(ctx5(t), cluster.TxnRequest{
			Compares: []fsm.Compare{{Key: "locks/job", Target: fsm.TargetRevision, Op: fsm.OpEqual, Number: token}},
			Success:  []fsm.Op{{Kind: fsm.OpPut, Key: "job/output", Value: []byte(value)}},
		})
		if err != nil {
			t.Fatalf("guarded write: %v", err)
		}
		return res.Succeeded
	}
	la := grant(t, c.Nodes[0], cluster.MinLeaseTTL)
	tokenA, err := acquire(c.Nodes[0], "A", la.ID)
	if err != nil {
		t.Fatal(err)
	}
	lb := grant(t, c.Nodes[1], cluster.MinLeaseTTL)
	if _, err := acquire(c.Nodes[1], "B", lb.ID); !errors.Is(err, cluster.ErrPrecondition) {
		t.Fatalf("second acquire while held: %v, want ErrPrecondition", err)
	}
	if !guardedWrite(c.Nodes[0], tokenA, "from A") {
		t.Fatal("the holder's guarded write failed")
	}
	// A stalls; its lease expires while B keeps its own alive.
	clk.Advance(4 * time.Second)
	if _, err := c.Nodes[1].KeepAliveLease(ctx5(t), lb.ID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	waitGone(t, c, "locks/job")
	tokenB, err := acquire(c.Nodes[1], "B", lb.ID)
	if err != nil || tokenB <= tokenA {
		t.Fatalf("B's acquire: token %d (A had %d), %v", tokenB, tokenA, err)
	}
	if guardedWrite(c.Nodes[2], tokenA, "stale A") {
		t.Fatal("a write with the stale token went through")
	}
	if !guardedWrite(c.Nodes[2], tokenB, "from B") {
		t.Fatal("the new holder's guarded write failed")
	}
	if got := mustGet(t, c.Nodes[0], "job/output"); got != "from B" {
		t.Fatalf("job/output = %q", got)
	}
}

func TestLeaseCallsRefuseBadInput(t *testing.T) {
	c, _ := leaseCluster(t)
	n := c.Nodes[0]
	for _, ttl := range []time.Duration{0, time.Second, 25 * time.Hour} {
		if _, err := n.GrantLease(ctx5(t), ttl); !errors.Is(err, cluster.ErrBadRequest) {
			t.Errorf("ttl %v: %v, want ErrBadRequest", ttl, err)
		}
	}
	for _, id := range []string{"", "x", "shard-9.ab", "shard-1.", "shard-01.ab", "meta.ab", "shard-1.a:b"} {
		if _, err := n.KeepAliveLease(ctx5(t), id); !errors.Is(err, cluster.ErrBadRequest) {
			t.Errorf("keepalive %q: %v, want ErrBadRequest", id, err)
		}
		if _, err := n.PutWithLease(ctx5(t), "k", nil, fsm.Condition{}, id); !errors.Is(err, cluster.ErrBadRequest) {
			t.Errorf("put with lease %q: %v, want ErrBadRequest", id, err)
		}
	}
	if _, err := n.PutWithLease(ctx5(t), "k", nil, fsm.Condition{}, "shard-1.0123456789abcdef"); !errors.Is(err, cluster.ErrNotFound) {
		t.Errorf("put with an unknown lease: %v, want ErrNotFound", err)
	}
	if mustGet(t, n, "k") != "<absent>" {
		t.Fatal("a put with an unknown lease wrote its key")
	}
}

// TestARevocationCutOffPartWayIsFinished: the home's leader stops (as if
// it died) after preparing the revocation on its home, and in another run
// after committing it there. Before the commit point the keys stay and the
// lease takes no keepalive; after it, no linearizable read sees a key on
// any shard; either way the expiry loop finishes the revocation on every
// replica.
func TestARevocationCutOffPartWayIsFinished(t *testing.T) {
	c, _ := leaseCluster(t)
	crash := func(at cluster.TxnStep) {
		for _, n := range c.Nodes {
			n.SetTxnHook(func(step cluster.TxnStep, _, _ string) error {
				if step == at {
					return errors.New("coordinator died")
				}
				return nil
			})
		}
	}
	heal := func() {
		for _, n := range c.Nodes {
			n.SetTxnHook(nil)
		}
	}
	staleGone := func(keys []string) {
		t.Helper()
		raftkvtest.Eventually(t, 15*time.Second, func() error {
			for _, n := range c.Nodes {
				for _, k := range keys {
					if _, err := n.Get(ctx5(t), k, cluster.Stale); !errors.Is(err, cluster.ErrNotFound) {
						return fmt.Errorf("%s's replica still has %s (%v)", n.ID, k, err)
					}
				}
			}
			return nil
		})
	}
	keys := leasedKeys(t)

	t.Run("before the commit point", func(t *testing.T) {
		l := grant(t, c.Nodes[0], time.Hour)
		for _, k := range keys {
			leasePut(t, c.Nodes[1], k, l.ID)
		}
		crash(cluster.StepLeasePrepare)
		if _, err := c.Nodes[2].RevokeLease(ctx5(t), l.ID); err == nil {
			t.Fatal("a revocation cut off before its commit point succeeded")
		}
		if _, err := c.Nodes[0].KeepAliveLease(ctx5(t), l.ID); !errors.Is(err, cluster.ErrNotFound) {
			t.Fatalf("keepalive of a lease being revoked: %v", err)
		}
		for _, k := range keys {
			if got := mustGet(t, c.Nodes[0], k); got != "v" {
				t.Fatalf("%s = %q before the commit point", k, got)
			}
		}
		heal()
		staleGone(keys)
	})
	t.Run("after the commit point", func(t *testing.T) {
		l := grant(t, c.Nodes[0], time.Hour)
		for _, k := range keys {
			leasePut(t, c.Nodes[1], k, l.ID)
		}
		crash(cluster.StepLeaseCommit)
		if _, err := c.Nodes[2].RevokeLease(ctx5(t), l.ID); err != nil {
			t.Fatalf("a revocation committed on its home: %v", err)
		}
		for _, k := range keys {
			if got := mustGet(t, c.Nodes[0], k); got != "<absent>" {
				t.Fatalf("%s = %q after the commit point", k, got)
			}
		}
		heal()
		staleGone(keys)
	})
	noTxnState(t, c, leaseShards)
}

// TestALeaseItsHomeNeverHadIsDropped: a grant fails at its home and its
// clean-up fails too, leaving the lease on the other shards, where a put
// with it would attach keys nobody ever expires. Each shard's leader asks
// the home about such a lease once it has held it for ten minutes, and
// drops it with its keys.
func TestALeaseItsHomeNeverHadIsDropped(t *testing.T) {
	c, clk := leaseCluster(t)
	var mu sync.Mutex
	var cut string
	for _, n := range c.Nodes {
		n.SetTxnHook(func(step cluster.TxnStep, lease, shard string) error {
			home, _, _ := strings.Cut(lease, ".")
			if (step == cluster.StepLeaseGrant && shard == home) || step == cluster.StepLeaseCommit {
				mu.Lock()
				cut = lease
				mu.Unlock()
				return errors.New("coordinator died")
			}
			return nil
		})
	}
	if _, err := c.Nodes[0].GrantLease(ctx5(t), time.Minute); err == nil {
		t.Fatal("a grant cut off at its home succeeded")
	}
	mu.Lock()
	id := cut
	mu.Unlock()
	home, _, _ := strings.Cut(id, ".")
	var key string
	for i := 1; i <= leaseShards; i++ {
		if s := fmt.Sprintf("shard-%d", i); s != home {
			key = keyOnShard(t, "orphan", s, leaseShards)
			break
		}
	}
	// The orphan takes keys on a shard that has it.
	leasePut(t, c.Nodes[1], key, id)
	waitPasses(t, c)
	clk.Advance(11 * time.Minute)
	waitGone(t, c, key)
	if _, err := c.Nodes[2].PutWithLease(ctx5(t), key, []byte("v"), fsm.Condition{}, id); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("put with the dropped lease: %v, want ErrNotFound", err)
	}
}

// TestLeasesUnderAuth: a token attaches only keys it may write, sees a
// lease's keys only if it may read them, and cannot list other leases;
// an admin can.
func TestLeasesUnderAuth(t *testing.T) {
	c := authCluster(t)
	ctx := context.Background()
	admin := clients(c, adminSecret)[0]
	if err := admin.PutRole(ctx, client.Role{Name: "app", Permissions: []client.Permission{{Prefix: "app/", Access: "readwrite"}}}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CreateToken(ctx, []string{"app"}, 0, "the app")
	if err != nil {
		t.Fatal(err)
	}
	var app *client.Client
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		for _, cl := range clients(c, tok.Secret) {
			if _, err := cl.Get(ctx, "app/none"); !errors.Is(err, client.ErrNotFound) {
				return fmt.Errorf("token not everywhere yet: %v", err)
			}
		}
		app = clients(c, tok.Secret)[1]
		return nil
	})
	l, err := app.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Put(ctx, "app/a", []byte("1"), client.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Put(ctx, "other/a", []byte("1"), client.WithLease(l.ID)); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("attach a key the token may not write: %v", err)
	}
	if info, err := app.LeaseInfo(ctx, l.ID); err != nil || len(info.Keys) != 1 {
		t.Fatalf("show own lease: %+v, %v", info, err)
	}
	if _, err := admin.Put(ctx, "other/b", []byte("1"), client.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := app.LeaseInfo(ctx, l.ID); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("show a lease with a key the token may not read: %v", err)
	}
	if _, err := app.Leases(ctx); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("list leases without admin: %v", err)
	}
	if list, err := admin.Leases(ctx); err != nil || len(list) != 1 {
		t.Fatalf("admin list: %+v, %v", list, err)
	}
	if _, err := app.KeepAlive(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := app.Revoke(ctx, l.ID); err != nil || n != 2 {
		t.Fatalf("revoke: %d, %v", n, err)
	}
}
