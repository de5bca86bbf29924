package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raftkvtest"
)

func TestCLIListsKeysOnlyCountsAndDeletesByPrefix(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 2)
	ep := c.Nodes[0].HTTPAddr
	for i := range 5 {
		raftkvtest.Put(ep, fmt.Sprintf("job/%d", i), "payload")
	}
	raftkvtest.Put(ep, "other", "x")

	if code, out, errOut := runCLI(t, "list", "job/", "--count", "--endpoints", ep); code != 0 || out != "5\n" {
		t.Fatalf("list --count: %d %q %q", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "list", "job/", "--keys-only", "--endpoints", ep); code != 0 || out != "job/0\njob/1\njob/2\njob/3\njob/4\n" {
		t.Fatalf("list --keys-only: %d %q", code, out)
	}
	if code, _, errOut := runCLI(t, "list", "--count", "--keys-only", "--endpoints", ep); code != 2 || !strings.Contains(errOut, "--count") {
		t.Fatalf("list --count --keys-only: %d %q, want a usage error", code, errOut)
	}

	// On a terminal del --prefix asks, and "n" deletes nothing.
	ask, in := askBeforeDeleting, stdin
	t.Cleanup(func() { askBeforeDeleting, stdin = ask, in })
	askBeforeDeleting = func() bool { return true }
	stdin = strings.NewReader("n\n")
	if code, out, _ := runCLI(t, "del", "--prefix", "job/", "--endpoints", ep); code != 1 || !strings.Contains(out, "(5 keys now)? [y/N]") || !strings.Contains(out, "nothing deleted") {
		t.Fatalf("del --prefix answered n: %d %q", code, out)
	}
	if r := raftkvtest.Get(ep, "job/0"); r.Status != http.StatusOK {
		t.Fatalf("job/0 gone after answering n: %d", r.Status)
	}
	stdin = strings.NewReader("y\n")
	if code, out, _ := runCLI(t, "del", "--prefix", "job/", "--endpoints", ep); code != 0 || !strings.HasSuffix(out, "deleted 5 keys\n") {
		t.Fatalf("del --prefix answered y: %d %q", code, out)
	}
	if code, _, errOut := runCLI(t, "del", "--prefix", "", "--endpoints", ep); code != 2 || !strings.Contains(errOut, "--all") {
		t.Fatalf("del --prefix '': %d %q, want a usage error naming --all", code, errOut)
	}
	if code, out, _ := runCLI(t, "del", "--all", "--yes", "-o", "json", "--endpoints", ep); code != 0 || !strings.Contains(out, `"deleted": 1`) {
		t.Fatalf("del --all --yes: %d %q", code, out)
	}
	if r := raftkvtest.Get(ep, "other"); r.Status != http.StatusNotFound {
		t.Fatalf("other after del --all: %d", r.Status)
	}
}

func TestBenchDeletesItsKeysWhenDoneUnlessToldToKeepThem(t *testing.T) {
	c := raftkvtest.NewCluster(t, 1, 2)
	ep := c.Nodes[0].HTTPAddr
	raftkvtest.Put(ep, "mine", "keep")
	count := func() string {
		_, out, _ := runCLI(t, "list", "run/", "--count", "--endpoints", ep)
		return strings.TrimSpace(out)
	}
	code, _, errOut := runCLI(t, "bench", "--endpoints", ep, "--prefix", "run/", "--keys", "20", "--clients", "2", "--duration", "200ms", "--cleanup=false", "-o", "json")
	if code != 0 || count() == "0" || strings.Contains(errOut, "deleted") {
		t.Fatalf("bench --cleanup=false: exit %d, %s keys under run/, stderr %q", code, count(), errOut)
	}
	code, _, errOut = runCLI(t, "bench", "--endpoints", ep, "--prefix", "run/", "--op", "get", "--keys", "20", "--clients", "2", "--duration", "200ms", "-o", "json")
	if code != 0 || count() != "0" || !strings.Contains(errOut, "writing the 20 keys") || !strings.Contains(errOut, `deleted the`) {
		t.Fatalf("bench with cleanup: exit %d, %s keys left under run/, stderr %q", code, count(), errOut)
	}
	if r := raftkvtest.Get(ep, "mine"); r.Status != http.StatusOK {
		t.Fatalf("bench's cleanup deleted a key outside its prefix: %d", r.Status)
	}
}
