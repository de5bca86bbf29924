package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/cluster"
	"github.com/raftkv/raftkv/raftkvtest"
)

// TestLeasesOverHTTP: grant, attach with PUT ?lease=, show, keep alive,
// the lock recipe of docs/leases.md (create-only with If-None-Match: *,
// the revision as fencing token, a stale token refused by a transaction's
// compare), expiry, revoke, and the errors of bad requests.
func TestLeasesOverHTTP(t *testing.T) {
	clk := &raftkvtest.ManualClock{}
	c := raftkvtest.NewClusterWith(t, 3, 2, func(cfg *cluster.Config) { cfg.Clock = clk })
	url := func(i int, path string) string { return "http://" + c.Nodes[i].HTTPAddr + path }
	var lease struct {
		ID          string   `json:"id"`
		TTL         string   `json:"ttl"`
		RemainingMs int64    `json:"remaining_ms"`
		Keys        []string `json:"keys"`
	}
	decode := func(a answer, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(a.body), v); err != nil {
			t.Fatalf("decode %q: %v", a.body, err)
		}
	}

	g := send(t, "POST", url(0, "/v1/lease"), `{"ttl":"10s"}`)
	if g.status != 200 {
		t.Fatalf("grant: %d %s", g.status, g.body)
	}
	decode(g, &lease)
	if lease.TTL != "10s" || !strings.HasPrefix(lease.ID, "shard-") {
		t.Fatalf("grant answered %s", g.body)
	}
	id := lease.ID

	// The lock: created only if absent, with the lease.
	acquire := send(t, "PUT", url(1, "/v1/kv/locks/job?lease="+id), "holder-a", "If-None-Match", "*")
	if acquire.status != 200 {
		t.Fatalf("acquire: %d %s", acquire.status, acquire.body)
	}
	var put struct {
		Revision uint64 `json:"revision"`
	}
	decode(acquire, &put)
	tokenA := put.Revision
	if again := send(t, "PUT", url(2, "/v1/kv/locks/job?lease="+id), "holder-b", "If-None-Match", "*"); again.status != 412 {
		t.Fatalf("second acquire while held: %d %s, want 412", again.status, again.body)
	}

	shown := send(t, "GET", url(2, "/v1/lease/"+id), "")
	decode(shown, &lease)
	if shown.status != 200 || len(lease.Keys) != 1 || lease.Keys[0] != "locks/job" || lease.RemainingMs <= 0 {
		t.Fatalf("show: %d %s", shown.status, shown.body)
	}
	if list := send(t, "GET", url(0, "/v1/lease"), ""); list.status != 200 || !strings.Contains(list.body, id) {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	clk.Advance(8 * time.Second)
	if ka := send(t, "POST", url(1, "/v1/lease/"+id+"/keepalive"), ""); ka.status != 200 || !strings.Contains(ka.body, `"ttl":"10s"`) {
		t.Fatalf("keepalive: %d %s", ka.status, ka.body)
	}

	// The holder stalls past its lease: the lock goes, another takes it.
	clk.Advance(11 * time.Second)
	raftkvtest.Eventually(t, 15*time.Second, func() error {
		if got := send(t, "GET", url(0, "/v1/kv/locks/job"), ""); got.status != 404 {
			return fmt.Errorf("lock still held: %d %s", got.status, got.body)
		}
		return nil
	})
	if late := send(t, "PUT", url(0, "/v1/kv/other?lease="+id), "x"); late.status != 404 {
		t.Fatalf("put with the expired lease: %d %s, want 404", late.status, late.body)
	}
	if got := send(t, "GET", url(0, "/v1/kv/other"), ""); got.status != 404 {
		t.Fatalf("a put with an expired lease wrote its key: %d", got.status)
	}
	g2 := send(t, "POST", url(2, "/v1/lease"), `{"ttl":30}`)
	decode(g2, &lease)
	acquireB := send(t, "PUT", url(2, "/v1/kv/locks/job?lease="+lease.ID), "holder-b", "If-None-Match", "*")
	decode(acquireB, &put)
	if acquireB.status != 200 || put.Revision <= tokenA {
		t.Fatalf("B's acquire: %d %s (A's token %d)", acquireB.status, acquireB.body, tokenA)
	}
	guarded := func(token uint64, value string) string {
		return fmt.Sprintf(`{"compare":[{"key":"locks/job","target":"revision","op":"=","revision":%d}],"success":[{"op":"put","key":"job/out","value":%q}]}`, token, value)
	}
	if stale := send(t, "POST", url(0, "/v1/txn"), guarded(tokenA, "stale")); stale.status != 200 || !strings.Contains(stale.body, `"succeeded":false`) {
		t.Fatalf("write with the stale token: %d %s, want succeeded:false", stale.status, stale.body)
	}
	if fresh := send(t, "POST", url(1, "/v1/txn"), guarded(put.Revision, "fresh")); !strings.Contains(fresh.body, `"succeeded":true`) {
		t.Fatalf("write with the holder's token: %d %s", fresh.status, fresh.body)
	}

	if rv := send(t, "DELETE", url(1, "/v1/lease/"+lease.ID), ""); rv.status != 200 || !strings.Contains(rv.body, `"deleted":1`) {
		t.Fatalf("revoke: %d %s", rv.status, rv.body)
	}
	if got := send(t, "GET", url(0, "/v1/kv/locks/job"), ""); got.status != 404 {
		t.Fatalf("the revoked lease's key: %d", got.status)
	}
	if got := send(t, "GET", url(0, "/v1/lease/"+lease.ID), ""); got.status != 404 || !strings.Contains(got.body, "not found or expired") {
		t.Fatalf("show after revoke: %d %s", got.status, got.body)
	}

	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/lease", `{"ttl":"1s"}`},
		{"POST", "/v1/lease", `{"ttl":"forever"}`},
		{"POST", "/v1/lease", `{}`},
		{"POST", "/v1/lease/nonsense/keepalive", ``},
		{"PUT", "/v1/kv/k?lease=", `v`},
		{"PUT", "/v1/kv/k?lease=shard-7.ab", `v`},
	} {
		if a := send(t, tc.method, url(0, tc.path), tc.body); a.status != 400 {
			t.Errorf("%s %s %s: %d %s, want 400", tc.method, tc.path, tc.body, a.status, a.body)
		}
	}
}
