package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestClusterStatus(t *testing.T) {
	f, srv := newFakeNode(t, "node1")
	self := strings.TrimPrefix(srv.URL, "http://")
	f.cluster = fmt.Sprintf(`{"cluster_id":"c-1","shards":1,"node":"node1",
		"nodes":[{"id":"node1","http_addr":%q,"raft_addr":"127.0.0.1:7000"},
		         {"id":"node2","http_addr":%q,"raft_addr":"127.0.0.1:7001","stage":"voter","health":{"status":"failed","healthy":false}}],
		"groups":[{"name":"meta","leader":"node1","term":2,"commit_index":20,"applied_index":20,"last_snapshot_index":0,"voters":["node1","node2"],"nonvoters":[]},
		          {"name":"shard-1","leader":"","term":5,"commit_index":40,"applied_index":33,"last_snapshot_index":16,"voters":["node1"],"nonvoters":["node2"]}]}`,
		self, deadAddr(t))

	code, out, errOut := runCLI(t, "cluster", "status", "--endpoints", srv.URL)
	if code != 0 {
		t.Fatalf("status: %d %q", code, errOut)
	}
	for _, re := range []string{
		`Cluster c-1, 1 shards, as seen by node1`,
		`(?m)^NODE\s+HTTP\s+RAFT\s+STAGE\s+HEALTH\s+REACHABLE FROM \S+$`,
		`(?m)^node1\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:7000\s+-\s+-\s+yes$`,
		`(?m)^node2\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:7001\s+voter\s+failed\s+no$`,
		`(?m)^GROUP\s+LEADER\s+TERM\s+COMMIT\s+APPLIED\s+SNAPSHOT\s+VOTERS\s+NONVOTERS\s+LAG$`,
		`(?m)^meta\s+node1\s+2\s+20\s+20\s+0\s+node1,node2\s+-\s+0$`,
		`(?m)^shard-1\s+-\s+5\s+40\s+33\s+16\s+node1\s+node2\s+7$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output does not match %s:\n%s", re, out)
		}
	}

	code, out, _ = runCLI(t, "cluster", "status", "-o", "json", "--endpoints", srv.URL)
	if code != 0 || !strings.Contains(out, `"cluster_id": "c-1"`) || !strings.Contains(out, `"shard-1"`) {
		t.Fatalf("status json: %d %q", code, out)
	}
}

func TestClusterMembership(t *testing.T) {
	f, srv := newFakeNode(t, "node1")
	ep := "--endpoints=" + srv.URL

	code, out, errOut := runCLI(t, "cluster", "join", "--id", "node4", "--raft-addr", "127.0.0.1:7003", "--http-addr", "127.0.0.1:8083", ep)
	if code != 0 || !strings.Contains(out, "node4 joined") {
		t.Fatalf("join: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "cluster", "leave", "node4", ep); code != 0 {
		t.Fatalf("leave: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "cluster", "leave", "--id", "node4", ep); code != 0 {
		t.Fatalf("leave --id: %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "cluster", "leave", "ghost", ep)
	if code != 1 || errOut != "Error: not_found: no node ghost\n" {
		t.Fatalf("leave ghost: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "cluster", "transfer-leadership", "--group", "shard-2", "--to", "node3", ep); code != 0 {
		t.Fatalf("transfer: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "cluster", "transfer-leadership", "3", ep); code != 0 {
		t.Fatalf("transfer positional: %d %q", code, errOut)
	}
	want := []string{
		`/v1/cluster/join {"http_addr":"127.0.0.1:8083","id":"node4","raft_addr":"127.0.0.1:7003"}`,
		`/v1/cluster/leave {"id":"node4"}`,
		`/v1/cluster/leave {"id":"node4"}`,
		`/v1/cluster/leave {"id":"ghost"}`,
		`/v1/cluster/transfer-leadership {"group":"shard-2","to":"node3"}`,
		`/v1/cluster/transfer-leadership {"group":"shard-3"}`,
	}
	if got := strings.Join(f.posts, "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
