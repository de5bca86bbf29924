package chaos

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// setWorkload adds unique keys (PUT with If-None-Match: *) under one
// prefix. At the end it lists the prefix: every acknowledged add must be
// there, and no add that failed definitely (503, 4xx, never sent) may be.
type setWorkload struct {
	prefix string
}

func newSetWorkload(runID string) *setWorkload {
	return &setWorkload{prefix: "chaos/" + runID + "/set/"}
}

func (w *setWorkload) Name() string { return "set" }

func (w *setWorkload) Step(ctx context.Context, cl *client, seq int) {
	key := fmt.Sprintf("%s%d-%d", w.prefix, cl.id, seq)
	cl.do(ctx, Op{F: "add", Key: key, Value: "1"})
}

// Check lists the prefix with a linearizable read (retrying until a node
// answers) and compares.
func (w *setWorkload) Check(ctx context.Context, c *Cluster, h *History, _ string, timeout time.Duration) CheckResult {
	present, err := listAll(ctx, c, w.prefix, timeout)
	if err != nil {
		cr := CheckResult{Checker: setChecker, Valid: "unknown"}
		cr.Problems = append(cr.Problems, "final read failed: "+err.Error())
		return cr
	}
	return judgeSet(h, present)
}

const setChecker = "set (no lost or phantom adds)"

// judgeSet compares the adds of a history with the keys present at the end:
// every acknowledged add must be there, no add that failed definitely may
// be, and nothing nobody added.
func judgeSet(h *History, present map[string]bool) CheckResult {
	cr := CheckResult{Checker: setChecker}
	var acked, failed, info, infoPresent int
	var lost, phantom []string
	attempted := map[string]bool{}
	for _, op := range h.Ops() {
		if op.F != "add" {
			continue
		}
		attempted[op.Key] = true
		switch op.Outcome {
		case OK:
			acked++
			if !present[op.Key] {
				lost = append(lost, op.Key)
			}
		case Fail:
			failed++
			if present[op.Key] {
				phantom = append(phantom, fmt.Sprintf("%s (%d %s)", op.Key, op.Status, op.Err))
			}
		case Info:
			info++
			if present[op.Key] {
				infoPresent++
			}
		}
	}
	var unknown []string
	for k := range present {
		if !attempted[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(lost)
	sort.Strings(phantom)
	sort.Strings(unknown)
	cr.Details = map[string]any{
		"acknowledged": acked, "failed": failed, "indeterminate": info,
		"indeterminate_present": infoPresent, "present": len(present),
		"lost": len(lost), "phantom": len(phantom), "unexpected": len(unknown),
	}
	cr.Valid = "yes"
	if len(lost) > 0 {
		cr.Valid = "no"
		cr.Problems = append(cr.Problems, fmt.Sprintf("%d acknowledged adds are missing, e.g. %v", len(lost), head(lost, 5)))
	}
	if len(phantom) > 0 {
		cr.Valid = "no"
		cr.Problems = append(cr.Problems, fmt.Sprintf("%d adds that failed definitely are present, e.g. %v", len(phantom), head(phantom, 5)))
	}
	if len(unknown) > 0 {
		cr.Valid = "no"
		cr.Problems = append(cr.Problems, fmt.Sprintf("%d keys present that nobody added, e.g. %v", len(unknown), head(unknown, 5)))
	}
	return cr
}

func head(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// listAll reads every key under prefix (linearizable, page by page) through
// the first node that answers.
func listAll(ctx context.Context, c *Cluster, prefix string, timeout time.Duration) (map[string]bool, error) {
	var out map[string]bool
	err := nodeproc.WaitFor(ctx, timeout, func() error {
		var lastErr error
		for _, p := range c.Up() {
			m, err := listFrom(ctx, p.HTTPAddr, prefix)
			if err == nil {
				out = m
				return nil
			}
			lastErr = err
		}
		if lastErr == nil {
			lastErr = fmt.Errorf("no node up")
		}
		return lastErr
	})
	return out, err
}

func listFrom(ctx context.Context, addr, prefix string) (map[string]bool, error) {
	out := map[string]bool{}
	after := ""
	c := adminClient(addr)
	for range 100000 {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		page, err := c.List(cctx, prefix, after, 10000)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", addr, err)
		}
		for _, it := range page.Items {
			out[it.Key] = true
		}
		if !page.More || len(page.Items) == 0 {
			return out, nil
		}
		after = page.Items[len(page.Items)-1].Key
	}
	return nil, fmt.Errorf("list %s: too many pages", addr)
}
