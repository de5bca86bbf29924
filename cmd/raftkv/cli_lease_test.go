package main

import (
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raftkvtest"
)

func TestCLILeaseGrantPutShowRevoke(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 2)
	ep := c.Nodes[0].HTTPAddr
	code, out, errOut := runCLI(t, "lease", "grant", "30s", "--endpoints", ep)
	id := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(id, "shard-") {
		t.Fatalf("lease grant: %d %q %q", code, out, errOut)
	}
	for _, k := range []string{"svc/a", "svc/b"} {
		if code, out, errOut := runCLI(t, "put", k, "up", "--lease", id, "--endpoints", ep); code != 0 || !strings.HasPrefix(out, "OK revision=") {
			t.Fatalf("put --lease: %d %q %q", code, out, errOut)
		}
	}
	if code, out, errOut := runCLI(t, "lease", "show", id, "--endpoints", ep); code != 0 || !strings.Contains(out, "ttl=30s") || !strings.HasSuffix(out, "keys=2\nsvc/a\nsvc/b\n") {
		t.Fatalf("lease show: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, "lease", "keepalive", id, "--endpoints", ep); code != 0 || out != "OK ttl=30s\n" {
		t.Fatalf("lease keepalive: %d %q %q", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "lease", "list", "--endpoints", ep); code != 0 || !strings.Contains(out, id) {
		t.Fatalf("lease list: %d %q", code, out)
	}
	if code, out, errOut := runCLI(t, "lease", "revoke", id, "--endpoints", ep); code != 0 || out != "OK deleted=2\n" {
		t.Fatalf("lease revoke: %d %q %q", code, out, errOut)
	}
	if code, _, _ := runCLI(t, "get", "svc/a", "--endpoints", ep); code != 1 {
		t.Fatalf("get after revoke: exit %d, want 1", code)
	}
	if code, _, errOut := runCLI(t, "lease", "show", id, "--endpoints", ep); code != 1 || !strings.Contains(errOut, "not found or expired") {
		t.Fatalf("show after revoke: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "lease", "grant", "soon", "--endpoints", ep); code != 2 || !strings.Contains(errOut, "duration") {
		t.Fatalf("grant soon: %d %q", code, errOut)
	}
}
