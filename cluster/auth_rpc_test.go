package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftkv/raftkv/registry"
	"github.com/raftkv/raftkv/rpc"
)

// A forwarded call carries the client's token id, and the leader checks
// that token's permissions itself: a node that forwards is not trusted to
// have checked them, and a forged call naming a weak token gets no more
// than that token may do.
func TestTheLeaderChecksTheCallerOfAForwardedCall(t *testing.T) {
	const secret = "solo-bootstrap-admin-secret"
	n := soloNodeWith(t, func(c *Config) { c.Auth, c.BootstrapToken = true, secret })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := n.Authenticate(secret); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the bootstrap token never became usable: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	admin := WithCaller(ctx, bootstrapTokenID)
	if err := n.PutRole(admin, registry.Role{Name: "app", Permissions: []registry.Permission{{Prefix: "app/", Access: registry.AccessReadWrite}}}); err != nil {
		t.Fatal(err)
	}
	tok, err := n.CreateToken(admin, TokenRequest{Roles: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}

	call := func(caller, group, op string, args any) error {
		raw, err := rpc.Marshal(args)
		if err != nil {
			t.Fatal(err)
		}
		_, err = n.serveRPC(ctx, rpc.Request{Group: group, Op: op, Caller: caller, Args: raw})
		return err
	}
	put := func(caller, key string) error {
		return call(caller, n.ShardOf(key), "put", putArgs{Key: key, Value: []byte("v")})
	}

	if err := put(tok.ID, "app/ok"); err != nil {
		t.Fatalf("a write the token may make: %v", err)
	}
	if err := put(tok.ID, "other/x"); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("a forwarded write outside the token's role: %v, want permission denied", err)
	}
	if _, ok := n.groups[n.ShardOf("other/x")].kv.Get("other/x"); ok {
		t.Fatal("the refused write was applied")
	}
	hijack := registry.Node{ID: "solo", HTTPAddr: "10.9.9.9:1", RaftAddr: "10.9.9.9:2"}
	if err := call(tok.ID, MetaGroup, "register", hijack); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("a forwarded registration by a non-admin token: %v, want permission denied", err)
	}
	if nd, _ := n.meta.reg.Node("solo"); nd.RaftAddr == hijack.RaftAddr {
		t.Fatal("the refused registration changed the registry")
	}
	if err := put("no-such-token", "app/x"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("a forwarded write naming an unknown token: %v, want unauthenticated", err)
	}
	if err := n.RevokeToken(admin, tok.ID); err != nil {
		t.Fatal(err)
	}
	if err := put(tok.ID, "app/after-revoke"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("a forwarded write with a revoked token: %v, want unauthenticated", err)
	}
}
