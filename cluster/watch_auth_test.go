package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/raftkvtest"
)

// TestAWatchCarriesOnlyWhatItsTokenMayRead: with auth on, a stream of
// every key shows only the keys the token may read, and ends with an error
// event once the token is revoked; a blocking read of a key it may not
// read is refused before any wait.
func TestAWatchCarriesOnlyWhatItsTokenMayRead(t *testing.T) {
	c := authCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := clients(c, adminSecret)[0]
	if err := admin.PutRole(ctx, client.Role{Name: "reader", Permissions: []client.Permission{{Prefix: "app/", Access: "read"}}}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CreateToken(ctx, []string{"reader"}, 0, "a watcher")
	if err != nil {
		t.Fatal(err)
	}
	user := clients(c, tok.Secret)[1]
	var list client.ListResult
	raftkvtest.Eventually(t, 10*time.Second, func() error { // the token reaches every node
		list, err = user.List(ctx, "", "", 1)
		return err
	})
	if _, err := user.Get(ctx, "other/x", client.WaitIndex(1, time.Minute)); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("blocking read of an unreadable key: %v", err)
	}
	for _, k := range []string{"app/1", "other/secret", "app/2"} {
		if _, err := admin.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	revoked := false
	for e, err := range user.Watch(ctx, "", client.WatchFrom(list.Cursor)) {
		if err != nil {
			if !revoked || !errors.Is(err, client.ErrUnauthenticated) {
				t.Fatalf("watch ended: %v (revoked %v)", err, revoked)
			}
			break
		}
		got = append(got, e.Key)
		if len(got) == 2 {
			if err := admin.RevokeToken(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
			revoked = true
			// A change wakes the stream, which then finds the token gone.
			if _, err := admin.Put(ctx, "app/3", []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
	}
	// app/3 may come before the revocation reaches the serving node.
	for _, k := range got {
		if k != "app/1" && k != "app/2" && k != "app/3" {
			t.Fatalf("events %v: %s is not readable", got, k)
		}
	}
	if len(got) < 2 {
		t.Fatalf("events %v", got)
	}
}
