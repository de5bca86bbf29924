package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/raftkvtest"
)

const adminSecret = "test-bootstrap-admin-secret"

func authCluster(t *testing.T) *raftkvtest.Cluster {
	return raftkvtest.NewClusterWith(t, 3, 2, func(cfg *cluster.Config) {
		cfg.Auth = true
		cfg.BootstrapToken = adminSecret
		cfg.JoinToken = adminSecret
	})
}

// clients returns one client per node, each talking to that node only, so
// every check runs on a leader and on followers that forward.
func clients(c *raftkvtest.Cluster, token string) []*client.Client {
	var out []*client.Client
	for _, n := range c.Nodes {
		opts := []client.Option{client.WithTimeout(10 * time.Second)}
		if token != "" {
			opts = append(opts, client.WithToken(token))
		}
		out = append(out, client.New([]string{n.HTTPAddr}, opts...))
	}
	return out
}

func TestAuthTokensAndRolesOnEveryNode(t *testing.T) {
	c := authCluster(t)
	ctx := context.Background()
	admin := clients(c, adminSecret)[0]

	// Without a token only the health endpoints answer.
	for _, cl := range clients(c, "") {
		if _, err := cl.Get(ctx, "app/x"); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("read without a token: %v, want unauthenticated", err)
		}
		if err := cl.Live(ctx); err != nil {
			t.Fatalf("/livez without a token: %v", err)
		}
	}
	for _, cl := range clients(c, "rkv_not-a-token") {
		if _, err := cl.Put(ctx, "app/x", []byte("v")); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("write with a made-up token: %v, want unauthenticated", err)
		}
	}

	if err := admin.PutRole(ctx, client.Role{Name: "app", Permissions: []client.Permission{
		{Prefix: "app/", Access: "readwrite"}, {Prefix: "shared/", Access: "read"},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, "shared/motd", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, "other/secret", []byte("no")); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CreateToken(ctx, []string{"app"}, 0, "the app")
	if err != nil || tok.Secret == "" || tok.ID == "" {
		t.Fatalf("create token: %+v %v", tok, err)
	}
	// The token reaches every node's registry replica.
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		for i, cl := range clients(c, tok.Secret) {
			if _, err := cl.Get(ctx, "shared/motd"); err != nil {
				return fmt.Errorf("node %d: %v", i+1, err)
			}
		}
		return nil
	})

	for i, cl := range clients(c, tok.Secret) {
		key := fmt.Sprintf("app/%d", i)
		if _, err := cl.Put(ctx, key, []byte("v")); err != nil {
			t.Fatalf("node %d: write under the role's prefix: %v", i+1, err)
		}
		if _, err := cl.Put(ctx, "other/x", []byte("v")); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("node %d: write outside the role: %v, want permission denied", i+1, err)
		}
		if _, err := cl.Put(ctx, "shared/motd", []byte("v")); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("node %d: write to a read-only prefix: %v, want permission denied", i+1, err)
		}
		if _, err := cl.Get(ctx, "other/secret"); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("node %d: read outside the role: %v, want permission denied", i+1, err)
		}
		if err := cl.Leave(ctx, "node3"); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("node %d: leave without admin: %v, want permission denied", i+1, err)
		}
		if _, err := cl.CreateToken(ctx, []string{"admin"}, 0, "escalate"); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("node %d: a non-admin made a token: %v", i+1, err)
		}
	}

	// A listing shows only what the token may read.
	page, err := clients(c, tok.Secret)[1].List(ctx, "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range page.Items {
		if kv.Key == "other/secret" {
			t.Fatalf("the listing shows a key outside the token's roles: %v", page.Items)
		}
	}
	if len(page.Items) != 4 { // app/0..2 and shared/motd
		t.Fatalf("listing %v, want the 3 app keys and shared/motd", page.Items)
	}

	// A transaction needs permission on every key it touches, and a denied
	// one writes nothing.
	txn := []byte(`{"success":[{"op":"put","key":"app/t","value":"1"},{"op":"put","key":"other/t","value":"1"}]}`)
	resp := raftkvtest.Do(http.MethodPost, c.Nodes[2].HTTPAddr, "/v1/txn", txn, map[string]string{"Authorization": "Bearer " + tok.Secret})
	if resp.Status != http.StatusForbidden {
		t.Fatalf("transaction touching a forbidden key: %d %s, want 403", resp.Status, resp.Body)
	}
	if _, err := admin.Get(ctx, "app/t"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("the denied transaction wrote app/t: %v", err)
	}

	// A revoked token stops working everywhere.
	if err := admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	raftkvtest.Eventually(t, 10*time.Second, func() error {
		for i, cl := range clients(c, tok.Secret) {
			if _, err := cl.Get(ctx, "app/0"); !errors.Is(err, client.ErrUnauthenticated) {
				return fmt.Errorf("node %d after revoke: %v", i+1, err)
			}
		}
		return nil
	})
}

func TestAnExpiredTokenIsRefused(t *testing.T) {
	c := authCluster(t)
	ctx := context.Background()
	admin := clients(c, adminSecret)[0]
	tok, err := admin.CreateToken(ctx, []string{"admin"}, time.Second, "short-lived")
	if err != nil {
		t.Fatal(err)
	}
	if tok.ExpiresAt == 0 {
		t.Fatalf("token %+v has no expiry", tok)
	}
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		_, err := clients(c, tok.Secret)[1].Put(ctx, "k", []byte("v"))
		if !errors.Is(err, client.ErrUnauthenticated) {
			return fmt.Errorf("write with an expired token: %v", err)
		}
		return nil
	})
}

func TestTheHTTPPortHasNoNodeToNodeEndpoint(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 1)
	for _, path := range []string{"/v1/internal/op", "/v1/internal/applied?group=meta"} {
		body := []byte(`{"group":"meta","op":"put","args":{"key":"k","value":"dg=="}}`)
		resp := raftkvtest.Do(http.MethodPost, c.Nodes[0].HTTPAddr, path, body, nil)
		if resp.Status != http.StatusNotFound {
			t.Fatalf("POST %s answered %d, want 404", path, resp.Status)
		}
	}
	if ok, why := c.Nodes[0].Ready(); !ok {
		t.Fatalf("node not ready after the forged requests: %s", why)
	}
}
