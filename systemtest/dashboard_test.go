package systemtest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium (Debian's chromium package, which CI
// installs) for the length of the test. Without it the test skips, except
// under CI, where a missing browser is a failure rather than a silent pass.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no Chromium on PATH (Debian: apt-get install chromium); CI must have it")
		}
		t.Skip("no Chromium on PATH (Debian: apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1200),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // ends the browser process it started
	})
	return ctx
}

// pageLeaders reads, from the dashboard's group grid, each group's leader
// as the page shows it ("" for none), and the state it shows for node.
const pageScript = `(() => {
  const leaders = {};
  for (const row of document.querySelectorAll("#groups tbody tr")) leaders[row.dataset.group] = row.dataset.leader;
  const node = document.querySelector('#nodes tr[data-node="%s"]');
  return { updated: document.body.dataset.updated || "", state: node ? node.dataset.state : "", leaders };
})()`

type pageView struct {
	Updated string            `json:"updated"`
	State   string            `json:"state"`
	Leaders map[string]string `json:"leaders"`
}

func readPage(ctx context.Context, node string) (pageView, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[pageView](fmt.Sprintf(pageScript, node)))
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG; below that, JPEG
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot: %s", path)
}

// TestDashboardShowsAKilledNodeAndItsSuccessors loads /ui/ from one node
// of a real 3-node cluster, makes another node lead a shard, kills that
// node, and watches the page (which refreshes by itself, without being
// reloaded) show it down and a new leader for every group it led.
func TestDashboardShowsAKilledNodeAndItsSuccessors(t *testing.T) {
	skipShort(t)
	ctx := browser(t)
	c := StartCluster(t, 3, 2)
	viewer, victim := c.Nodes[0], c.Nodes[1]

	if _, err := chromedp.Run(ctx, chromedp.Navigate("http://"+viewer.HTTPAddr+"/ui/")); err != nil {
		t.Fatalf("loading the dashboard: %v", err)
	}

	// The victim leads shard-1 (the test makes it) and the page shows it,
	// with every node up and every group led.
	r := mustDo(t, viewer, http.MethodPost, "/v1/cluster/transfer-leadership",
		[]byte(fmt.Sprintf(`{"group":"shard-1","to":%q}`, victim.ID)))
	if r.Status != http.StatusOK {
		t.Fatalf("transfer shard-1 to %s: %s", victim.ID, r)
	}
	var before pageView
	mustOK(t, WaitFor(20*time.Second, func() error {
		v, err := readPage(ctx, victim.ID)
		if err != nil {
			return err
		}
		before = v
		switch {
		case v.State != "up":
			return fmt.Errorf("page shows %s as %q", victim.ID, v.State)
		case len(v.Leaders) != 1+c.Shards:
			return fmt.Errorf("page shows groups %v, want meta and %d shards", v.Leaders, c.Shards)
		case v.Leaders["shard-1"] != victim.ID:
			return fmt.Errorf("page shows shard-1 led by %q, want %s", v.Leaders["shard-1"], victim.ID)
		}
		for g, l := range v.Leaders {
			if l == "" {
				return fmt.Errorf("page shows no leader for %s", g)
			}
		}
		return nil
	}))
	screenshot(t, ctx, "dashboard-before-kill.png")
	var led []string
	for g, l := range before.Leaders {
		if l == victim.ID {
			led = append(led, g)
		}
	}

	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// Leader balancing may have moved a group onto or off the victim
	// since the page was read; what must hold is that every group the page
	// showed it leading gets another leader on the page.
	mustOK(t, WaitFor(20*time.Second, func() error {
		v, err := readPage(ctx, victim.ID)
		if err != nil {
			return err
		}
		if v.State != "down" {
			return fmt.Errorf("page shows %s as %q after the kill", victim.ID, v.State)
		}
		for _, g := range led {
			if l := v.Leaders[g]; l == "" || l == victim.ID {
				return fmt.Errorf("page shows %s led by %q after %s was killed", g, l, victim.ID)
			}
		}
		return nil
	}))
	t.Logf("the page showed %s down and new leaders for %s %v after the kill", victim.ID,
		strings.Join(led, ", "), time.Since(killed).Round(10*time.Millisecond))
	screenshot(t, ctx, "dashboard-after-kill.png")

	// The live events table, fed by the viewer's event stream, told the
	// same story as it happened: each group the victim led got a new
	// leader there.
	mustOK(t, WaitFor(10*time.Second, func() error {
		for _, g := range led {
			rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(
				`[...document.querySelectorAll('#live-events tr[data-type="leader"][data-group="%s"]')].map((r) => r.cells[3].textContent)`, g)))
			if err != nil {
				return err
			}
			// Newest first: the latest word on g must be its new leader.
			if len(rows) == 0 || !strings.HasPrefix(rows[0], "leader is ") || strings.HasPrefix(rows[0], "leader is "+victim.ID+" ") {
				return fmt.Errorf("live events for %s, newest first: %q; want a leader other than %s", g, rows, victim.ID)
			}
		}
		return nil
	}))

	// The down node's column says so in every row.
	downCells, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(
		`document.querySelectorAll('#groups td[data-node="%s"][data-role="down"]').length`, victim.ID)))
	mustOK(t, err)
	if downCells != 1+c.Shards {
		t.Errorf("%d of %d cells of %s's column show it down", downCells, 1+c.Shards, victim.ID)
	}
	// And each says, as the group's new leader sees it, that the leader
	// cannot reach it.
	mustOK(t, WaitFor(20*time.Second, func() error {
		unreachable, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(
			`document.querySelectorAll('#groups td[data-node="%s"][data-role="down"] .lag[data-reachable="false"]').length`, victim.ID)))
		if err != nil {
			return err
		}
		if unreachable != 1+c.Shards {
			return fmt.Errorf("%d of %d cells of %s's column show its leader's view of it as unreachable", unreachable, 1+c.Shards, victim.ID)
		}
		return nil
	}))
}
