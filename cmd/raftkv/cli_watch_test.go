package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raftkvtest"
)

// TestCLIWatchPrintsOneLinePerChange: raftkv watch --from a listing's
// cursor prints every change after it, one line each, and stops at
// --duration with status 0.
func TestCLIWatchPrintsOneLinePerChange(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 2)
	ep := c.Nodes[0].HTTPAddr
	cursor := raftkvtest.Do(http.MethodGet, ep, "/v1/kv?prefix=app/", nil, nil).Header.Get("X-Raftkv-Cursor")
	raftkvtest.Put(ep, "app/a", "1")
	raftkvtest.Put(ep, "app/b", "2")
	raftkvtest.Put(ep, "other", "x")
	raftkvtest.Do(http.MethodDelete, ep, raftkvtest.KeyPath("app/a"), nil, nil)

	code, out, errOut := runCLI(t, "watch", "app/", "--from", cursor, "--duration", "2s", "--endpoints", ep)
	if code != 0 {
		t.Fatalf("watch: %d %q %q", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	re := regexp.MustCompile(`^shard-\d \d+ (put    app/a 1|put    app/b 2|delete app/a)$`)
	for _, l := range lines {
		if !re.MatchString(l) {
			t.Errorf("line %q", l)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), out)
	}
	if code, _, errOut := runCLI(t, "watch", "a", "b", "--endpoints", ep); code != 2 || !strings.Contains(errOut, `"b"`) {
		t.Fatalf("two prefixes: %d %q", code, errOut)
	}
}
