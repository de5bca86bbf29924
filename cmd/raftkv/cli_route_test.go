package main

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// routedFakes are two fake nodes of a one-shard cluster whose GET
// /v1/cluster says node2 leads shard-1 at leaderAddr.
func routedFakes(t *testing.T, leaderAddr string) (endpoint, leader *fakeNode, epSrv, leadSrv *httptest.Server) {
	endpoint, epSrv = newFakeNode(t, "node1")
	leader, leadSrv = newFakeNode(t, "node2")
	if leaderAddr == "" {
		leaderAddr = strings.TrimPrefix(leadSrv.URL, "http://")
	}
	status := fmt.Sprintf(`{"cluster_id":"c-1","shards":1,"node":"node1",
 "nodes":[{"id":"node1","http_addr":%q},{"id":"node2","http_addr":%q}],
 "groups":[{"name":"shard-1","leader":"node2"}]}`, strings.TrimPrefix(epSrv.URL, "http://"), leaderAddr)
	endpoint.cluster, leader.cluster = status, status
	return endpoint, leader, epSrv, leadSrv
}

func keyRequests(f *fakeNode) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keyReqs
}

func TestCLIKeyCommandsGoToTheShardLeaderByDefault(t *testing.T) {
	for _, args := range [][]string{
		{"put", "k", "v"},
		{"get", "k"},
		{"del", "k"},
		{"txn", "-f", "-"},
	} {
		ep, lead, epSrv, _ := routedFakes(t, "")
		lead.data["k"], lead.revs["k"] = []byte("v"), 1
		stdin = strings.NewReader(`{"success":[{"op":"put","key":"k","value":"1"}]}`)
		code, out, errOut := runCLI(t, append(args, "--endpoints", epSrv.URL)...)
		if code != 0 {
			t.Fatalf("%v: code %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		if e, l := keyRequests(ep), keyRequests(lead); e != 0 || l != 1 {
			t.Errorf("%v: key requests on the endpoint %d, on the leader %d; want the leader's", args, e, l)
		}

		ep, lead, epSrv, _ = routedFakes(t, "")
		ep.data["k"], ep.revs["k"] = []byte("v"), 1
		stdin = strings.NewReader(`{"success":[{"op":"put","key":"k","value":"1"}]}`)
		code, out, errOut = runCLI(t, append(args, "--endpoints", epSrv.URL, "--no-leader-routing")...)
		if code != 0 {
			t.Fatalf("%v --no-leader-routing: code %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		if e, l := keyRequests(ep), keyRequests(lead); e != 1 || l != 0 {
			t.Errorf("%v --no-leader-routing: key requests on the endpoint %d, on the leader %d; want the endpoint's", args, e, l)
		}
	}
}

func TestCLINoLeaderRoutingFromTheEnvironment(t *testing.T) {
	ep, lead, epSrv, _ := routedFakes(t, "")
	t.Setenv("RAFTKV_NO_LEADER_ROUTING", "true")
	if code, _, errOut := runCLI(t, "put", "k", "v", "--endpoints", epSrv.URL); code != 0 {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	if e, l := keyRequests(ep), keyRequests(lead); e != 1 || l != 0 {
		t.Errorf("key requests on the endpoint %d, on the leader %d; want the endpoint's", e, l)
	}
}

func TestCLIBehindALoadBalancerFallsBackToTheEndpoints(t *testing.T) {
	// The registry's address of the leader is not reachable from here,
	// as when clients only see a load balancer: the endpoint serves.
	ep, lead, epSrv, _ := routedFakes(t, deadAddr(t))
	code, out, errOut := runCLI(t, "put", "k", "v", "--endpoints", epSrv.URL)
	if code != 0 || !strings.Contains(out, "revision") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
	if e, l := keyRequests(ep), keyRequests(lead); e != 1 || l != 0 {
		t.Errorf("key requests on the endpoint %d, on the leader %d", e, l)
	}
}

func TestCLITxnReportsTheServersError(t *testing.T) {
	_, srv := newFakeNode(t, "node1")
	stdin = strings.NewReader(`{"success":[{"op":"put","key":"held","value":"1"}]}`)
	code, out, errOut := runCLI(t, "txn", "--endpoints", srv.URL)
	if code != 1 || out != "" || !strings.Contains(errOut, "Error: conflict: keys locked by other transactions") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
	stdin = strings.NewReader(`{"success":[`)
	if code, _, errOut := runCLI(t, "txn", "--endpoints", srv.URL); code != 2 || !strings.Contains(errOut, "not valid JSON") {
		t.Fatalf("bad JSON: code %d, stderr %q", code, errOut)
	}
}
