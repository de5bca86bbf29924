package httpapi

import (
	"fmt"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/cluster"
)

// tokenRequired is a node with auth on that knows no token.
type tokenRequired struct{ *fakeService }

func (tokenRequired) AuthEnabled() bool { return true }
func (tokenRequired) Authenticate(string) (string, error) {
	return "", fmt.Errorf("%w: unknown token", cluster.ErrUnauthenticated)
}

func TestDashboardFilesNeedNoTokenButItsDataDoes(t *testing.T) {
	svc := tokenRequired{&fakeService{}}
	for path, want := range map[string]string{
		"/ui/":          "<title>raftkv dashboard</title>",
		"/ui/app.js":    "/v1/cluster/overview",
		"/ui/style.css": "table",
	} {
		rec := serve(t, svc, "GET", path, nil, nil)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s without a token: %d, body lacks %q", path, rec.Code, want)
		}
		if rec.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache so an upgraded node serves its own page", path, rec.Header().Get("Cache-Control"))
		}
	}
	if rec := serve(t, svc, "GET", "/ui", nil, nil); rec.Code != 301 || rec.Header().Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want a redirect to /ui/", rec.Code, rec.Header().Get("Location"))
	}
	if rec := serve(t, svc, "GET", "/ui/missing.js", nil, nil); rec.Code != 404 {
		t.Errorf("GET /ui/missing.js: %d, want 404", rec.Code)
	}
	if rec := serve(t, svc, "GET", "/v1/cluster/overview", nil, nil); rec.Code != 401 {
		t.Errorf("GET /v1/cluster/overview without a token: %d, want 401", rec.Code)
	}
	// A path that merely starts like the dashboard's is not open.
	if rec := serve(t, svc, "GET", "/uifoo", nil, nil); rec.Code != 401 {
		t.Errorf("GET /uifoo without a token: %d, want 401", rec.Code)
	}
}

func TestOverviewAnswersWhatTheNodeGathered(t *testing.T) {
	rec := serve(t, &fakeService{}, "GET", "/v1/cluster/overview", nil, nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"nodes":[{"id":"fake1"`) {
		t.Fatalf("overview: %d %s", rec.Code, rec.Body)
	}
}
