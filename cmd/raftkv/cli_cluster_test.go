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
		"groups":[{"name":"meta","state":"Leader","leader":"node1","term":2,"commit_index":20,"applied_index":20,"last_snapshot_index":0,"voters":["node1","node2"],"nonvoters":[],
		           "followers":[{"id":"node2","voter":true,"reachable":false,"last_contact_ms":45190,"match_index":8,"lag_entries":12,"report_age_ms":45000}]},
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
		`(?m)^GROUP\s+LEADER\s+TERM\s+COMMIT\s+APPLIED\s+SNAPSHOT\s+VOTERS\s+NONVOTERS$`,
		`(?m)^meta\s+node1\s+2\s+20\s+20\s+0\s+node1,node2\s+-$`,
		`(?m)^shard-1\s+-\s+5\s+40\s+33\s+16\s+node1\s+node2$`,
		`(?m)^GROUP\s+LEADER\s+FOLLOWER\s+REACHABLE\s+LAG\s+LAST CONTACT$`,
		`(?m)^meta\s+node1\s+node2\s+no\s+12\s+45\.2s$`,
		`(?m)^shard-1\s+-\s+\(no leader's view\)`,
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

// TestClusterStatusTakesTheLagFromEachGroupsLeader: node1 answers but
// leads nothing; the overview it gathers carries node2's status, which
// leads shard-1 and sees node3 down. The followers table shows node2's view.
func TestClusterStatusTakesTheLagFromEachGroupsLeader(t *testing.T) {
	f, srv := newFakeNode(t, "node1")
	f.cluster = `{"cluster_id":"c-1","shards":1,"node":"node1","nodes":[],
		"groups":[{"name":"shard-1","state":"Follower","leader":"node2","term":3,"voters":["node1","node2","node3"]}]}`
	f.overview = `{"node":"node1","nodes":[
		{"id":"node2","reachable":true,"status":{"node":"node2","groups":[{"name":"shard-1","state":"Leader","leader":"node2","term":3,
			"followers":[{"id":"node1","voter":true,"reachable":true,"last_contact_ms":0,"lag_entries":0},
			             {"id":"node3","voter":true,"reachable":false,"last_contact_ms":3000,"lag_entries":40}]}]}},
		{"id":"node3","reachable":false,"error":"connection refused"}]}`
	code, out, errOut := runCLI(t, "cluster", "status", "--endpoints", srv.URL)
	if code != 0 {
		t.Fatalf("status: %d %q", code, errOut)
	}
	for _, re := range []string{
		`(?m)^shard-1\s+node2\s+node1\s+yes\s+0\s+0s$`,
		`(?m)^shard-1\s+node2\s+node3\s+no\s+40\s+3s$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output does not match %s:\n%s", re, out)
		}
	}
}

// TestClusterStatusOfARemovedNodeSaysSoFirst: the answering node was
// removed; before its stale tables, the output says so and how it comes
// back.
func TestClusterStatusOfARemovedNodeSaysSoFirst(t *testing.T) {
	f, srv := newFakeNode(t, "node3")
	f.cluster = `{"cluster_id":"c-1","shards":1,"node":"node3","nodes":[],"groups":[],
		"removed":{"groups":["meta","shard-1"],"evidence":"configuration","message":"this node (node3) is no longer in the configuration of meta, shard-1: it left; To bring it back, stop it, wipe its data dir and start it with --join HOST:PORT (the HTTP address of a member): it joins as a new node"}}`
	code, out, errOut := runCLI(t, "cluster", "status", "--endpoints", srv.URL)
	if code != 0 {
		t.Fatalf("status: %d %q", code, errOut)
	}
	first := strings.SplitN(out, "\n\n", 3)
	if len(first) < 2 || !strings.HasPrefix(first[1], "node3 WAS REMOVED FROM THE CLUSTER: this node (node3) is no longer") || !strings.Contains(first[1], "--join") {
		t.Errorf("status of a removed node does not say so first:\n%s", out)
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
