package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/cluster"
)

// removedService is a node that knows it was removed from the cluster.
type removedService struct{ fakeService }

func (*removedService) CheckMember() error {
	return fmt.Errorf("%w: this node (fake1) left; wipe its data dir and start it with --join HOST:PORT", cluster.ErrRemoved)
}

// TestARemovedNodeAnswersGoneForEveryDataRequest: whatever the consistency
// asked, no key or transaction request reaches the service of a removed
// node: each is answered 410 removed, with the way back. /readyz says so
// too, and the cluster status still answers.
func TestARemovedNodeAnswersGoneForEveryDataRequest(t *testing.T) {
	svc := &removedService{}
	for _, req := range []struct{ method, target string }{
		{http.MethodGet, "/v1/kv/a?consistency=stale"},
		{http.MethodGet, "/v1/kv/a?consistency=stale&min_index=3"},
		{http.MethodHead, "/v1/kv/a"},
		{http.MethodPut, "/v1/kv/a"},
		{http.MethodDelete, "/v1/kv/a"},
		{http.MethodGet, "/v1/kv?prefix=a&consistency=stale"},
		{http.MethodGet, "/v1/kv?prefix=a&consistency=stale&count_only=true"},
		{http.MethodDelete, "/v1/kv?prefix=a"},
		{http.MethodPost, "/v1/txn"},
		{http.MethodGet, "/v1/txn/shard-1.abc"},
		{http.MethodGet, "/v1/watch?prefix=a"},
		{http.MethodGet, "/v1/kv/a?index=3&wait=1s"},
		{http.MethodPost, "/v1/lease"},
		{http.MethodGet, "/v1/lease"},
		{http.MethodGet, "/v1/lease/shard-1.abc"},
		{http.MethodPost, "/v1/lease/shard-1.abc/keepalive"},
		{http.MethodDelete, "/v1/lease/shard-1.abc"},
		{http.MethodGet, "/readyz"},
	} {
		rec := serve(t, svc, req.method, req.target, []byte("v"), nil)
		if rec.Code != http.StatusGone || (req.method != http.MethodHead && (errorCode(t, rec) != "removed" || !strings.Contains(rec.Body.String(), "--join"))) {
			t.Errorf("%s %s: %d %s; want 410 removed with the way back", req.method, req.target, rec.Code, rec.Body)
		}
	}
	if len(svc.calls) != 0 {
		t.Errorf("a removed node's service was called: %v", svc.calls)
	}
	if rec := serve(t, svc, http.MethodGet, "/v1/cluster", nil, nil); rec.Code != http.StatusOK {
		t.Errorf("GET /v1/cluster on a removed node: %d %s", rec.Code, rec.Body)
	}
	// A node that cannot tell (the plain fake) is not refused.
	if rec := serve(t, &fakeService{}, http.MethodGet, "/v1/kv?prefix=a&consistency=stale", nil, nil); rec.Code != http.StatusOK {
		t.Errorf("list on a member: %d %s", rec.Code, rec.Body)
	}
}
