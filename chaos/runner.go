package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// Config describes one chaos run.
type Config struct {
	// Cluster to start (Nodes, Shards, Bin) or attach to (Attach, HTTP
	// addresses of running nodes).
	Nodes  int
	Shards int
	Bin    string
	Attach []string
	// ExtraArgs are added to every started node's command line.
	ExtraArgs []string

	// Workload is "register", "set" or "bank".
	Workload string
	// Nemeses to rotate through ("kill", "pause", "leader-transfer",
	// "leave-join", "partition"); empty = none.
	Nemeses []string

	// Duration of the workload; MaxOps bounds the operation count too (0 = no
	// bound).
	Duration time.Duration
	MaxOps   int
	// Clients run concurrently, spread over the nodes.
	Clients int
	// Keys is the register workload's key count.
	Keys int
	// Think is a pause after each operation of a client (keeps CPU modest).
	Think time.Duration

	// Interval is the quiet time between faults; FaultFor how long a fault
	// lasts before it is repaired.
	Interval time.Duration
	FaultFor time.Duration

	// Seed makes the choices of workload and nemesis repeatable (0 = random).
	Seed uint64
	// OutDir receives history.json, result.json and, on a linearizability
	// failure, linearizability.html. A temp dir when empty.
	OutDir string
	// CheckTimeout bounds the linearizability check.
	CheckTimeout time.Duration
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

func (cfg *Config) setDefaults() {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Workload == "" {
		cfg.Workload = "register"
	}
	if cfg.Duration == 0 {
		cfg.Duration = 30 * time.Second
	}
	if cfg.Clients == 0 {
		cfg.Clients = 5
	}
	if cfg.Keys == 0 {
		cfg.Keys = 4
	}
	if cfg.Interval == 0 {
		cfg.Interval = 3 * time.Second
	}
	if cfg.FaultFor == 0 {
		cfg.FaultFor = 2 * time.Second
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 2 * time.Minute
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
}

// CheckResult is one checker's verdict: Valid is "yes", "no" (a violation)
// or "unknown" (the checker could not decide).
type CheckResult struct {
	Checker   string         `json:"checker"`
	Valid     string         `json:"valid"`
	Problems  []string       `json:"problems,omitempty"`
	Details   map[string]any `json:"details,omitempty"`
	Artifacts []string       `json:"artifacts,omitempty"`
}

// Result is what a run found.
type Result struct {
	Workload string   `json:"workload"`
	Nemeses  []string `json:"nemeses"`
	Skipped  []string `json:"skipped,omitempty"`
	Nodes    int      `json:"nodes"`
	Shards   int      `json:"shards"`
	Seed     uint64   `json:"seed"`
	Netns    bool     `json:"netns"`
	// Duration is how long the workload ran.
	Duration string `json:"duration"`
	// Ops counts operations by function and outcome.
	Ops map[string]map[Outcome]int `json:"ops"`
	// Faults are the nemesis events in order.
	Faults []Event           `json:"faults"`
	Checks []CheckResult     `json:"checks"`
	Valid  bool              `json:"valid"`
	Errors []string          `json:"errors,omitempty"`
	Files  map[string]string `json:"files,omitempty"`
}

type workload interface {
	Name() string
	Step(ctx context.Context, cl *client, seq int)
	Check(ctx context.Context, c *Cluster, h *History, outDir string, timeout time.Duration) CheckResult
}

// Run starts (or attaches to) a cluster, runs the workload with the
// nemeses, repairs every fault, checks the history and cleans up every
// process and namespace it made. An error means the run itself could not
// be done; violations are in the Result (Valid false).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	runID := fmt.Sprintf("%x", rng.Uint32())
	if cfg.OutDir == "" {
		d, err := os.MkdirTemp("", "raftkv-chaos-out-")
		if err != nil {
			return nil, err
		}
		cfg.OutDir = d
	} else if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Workload: cfg.Workload, Nemeses: cfg.Nemeses, Seed: cfg.Seed, Ops: map[string]map[Outcome]int{},
		Files: map[string]string{}}

	var wl workload
	switch cfg.Workload {
	case "register":
		wl = newRegisterWorkload(runID, cfg.Keys, cfg.Clients)
	case "set":
		wl = newSetWorkload(runID)
	case "bank":
		wl = newBankWorkload(runID)
	default:
		return nil, fmt.Errorf("unknown workload %q (have register, set, bank)", cfg.Workload)
	}

	c, err := openCluster(ctx, &cfg, res)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res.Nodes, res.Shards, res.Netns = len(c.Nodes), c.Shards, c.Netns()

	var nems []Nemesis
	for _, name := range cfg.Nemeses {
		n, err := newNemesis(name, c)
		if errors.Is(err, errSkip) {
			res.Skipped = append(res.Skipped, err.Error())
			cfg.Logf("%v", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		nems = append(nems, n)
	}

	if s, ok := wl.(interface {
		Setup(context.Context, *Cluster) error
	}); ok {
		if err := s.Setup(ctx, c); err != nil {
			return nil, fmt.Errorf("%s workload setup: %w", wl.Name(), err)
		}
	}

	h := NewHistory()
	began := time.Now()
	runWorkload(ctx, &cfg, c, h, wl, nems, rng)
	res.Duration = time.Since(began).Round(time.Millisecond).String()

	// Everything is repaired by now; give the cluster time to settle so
	// the final reads see all of it.
	if !c.Attached() {
		if err := c.WaitConverged(ctx, nodeproc.ConvergeTimeout); err != nil {
			res.Errors = append(res.Errors, "after the run: "+err.Error())
		}
	}
	cfg.Logf("checking %d operations", len(h.Ops()))
	res.Checks = append(res.Checks, wl.Check(ctx, c, h, cfg.OutDir, cfg.CheckTimeout))
	if !c.Attached() {
		res.Checks = append(res.Checks, checkLogs(c))
	}
	for _, op := range h.Ops() {
		if res.Ops[op.F] == nil {
			res.Ops[op.F] = map[Outcome]int{}
		}
		res.Ops[op.F][op.Outcome]++
	}
	res.Faults = h.Events()
	res.Valid = len(res.Errors) == 0
	for _, cr := range res.Checks {
		if cr.Valid != "yes" {
			res.Valid = false
		}
	}
	res.Files["history"] = filepath.Join(cfg.OutDir, "history.json")
	if err := h.WriteJSON(res.Files["history"]); err != nil {
		res.Errors = append(res.Errors, err.Error())
	}
	res.Files["result"] = filepath.Join(cfg.OutDir, "result.json")
	if b, err := json.MarshalIndent(res, "", "  "); err == nil {
		_ = os.WriteFile(res.Files["result"], b, 0o644)
	}
	if !c.Attached() {
		// Keep the node logs next to the history: a failed check or a
		// nemesis error is explained there.
		for _, p := range c.Nodes {
			if b, err := os.ReadFile(p.LogPath); err == nil {
				_ = os.WriteFile(filepath.Join(cfg.OutDir, p.ID+".log"), b, 0o644)
			}
		}
	}
	return res, nil
}

func openCluster(ctx context.Context, cfg *Config, res *Result) (*Cluster, error) {
	if len(cfg.Attach) > 0 {
		cfg.Logf("attaching to %v", cfg.Attach)
		return Attach(ctx, cfg.Attach)
	}
	wantNetns := false
	for _, n := range cfg.Nemeses {
		if n == "partition" {
			wantNetns = true
		}
	}
	if wantNetns {
		if err := NetnsSupported(); err != nil {
			wantNetns = false // newNemesis reports the skip
		}
	}
	cfg.Logf("starting %d nodes (netns %v)", cfg.Nodes, wantNetns)
	c, err := StartCluster(ctx, ClusterOptions{Nodes: cfg.Nodes, Shards: cfg.Shards, Bin: cfg.Bin,
		Netns: wantNetns, ExtraArgs: cfg.ExtraArgs, Logf: cfg.Logf})
	if err != nil && wantNetns {
		res.Skipped = append(res.Skipped, "network namespaces unavailable, running without them: "+err.Error())
		cfg.Logf("network namespaces unavailable (%v); starting on 127.0.0.1", err)
		c, err = StartCluster(ctx, ClusterOptions{Nodes: cfg.Nodes, Shards: cfg.Shards, Bin: cfg.Bin,
			ExtraArgs: cfg.ExtraArgs, Logf: cfg.Logf})
	}
	return c, err
}

// runWorkload runs the clients until Duration or MaxOps, and the nemesis
// loop beside them; it returns once both are done and every fault is
// repaired.
func runWorkload(ctx context.Context, cfg *Config, c *Cluster, h *History, wl workload, nems []Nemesis, rng *rand.Rand) {
	wctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var count sync.Mutex
	ops := 0
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		cl := &client{id: i, process: i, procs: cfg.Clients, c: c, node: i,
			rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(i))), h: h}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; wctx.Err() == nil; seq++ {
				count.Lock()
				ops++
				over := cfg.MaxOps > 0 && ops > cfg.MaxOps
				count.Unlock()
				if over {
					return
				}
				wl.Step(wctx, cl, seq)
				if cfg.Think > 0 {
					select {
					case <-wctx.Done():
					case <-time.After(cfg.Think):
					}
				}
			}
		}()
	}
	nemDone := make(chan struct{})
	go func() {
		defer close(nemDone)
		nemesisLoop(wctx, cfg, c, h, nems, rand.New(rand.NewPCG(rng.Uint64(), 7)))
	}()
	wg.Wait()
	cancel()
	<-nemDone
}

// nemesisLoop alternates quiet time and one fault at a time, round robin
// over nems, until ctx ends. It always repairs the last fault, with a fresh
// context, before it returns.
func nemesisLoop(ctx context.Context, cfg *Config, c *Cluster, h *History, nems []Nemesis, rng *rand.Rand) {
	if len(nems) == 0 {
		return
	}
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for i := 0; ; i++ {
		if !sleep(cfg.Interval) {
			return
		}
		n := nems[i%len(nems)]
		desc, err := n.Start(ctx, rng)
		if err != nil {
			h.Event(n.Name(), "error", fmt.Sprintf("%s: %v", desc, err))
			cfg.Logf("nemesis %s: %s: %v", n.Name(), desc, err)
		} else {
			h.Event(n.Name(), "start", desc)
			cfg.Logf("nemesis %s: %s", n.Name(), desc)
		}
		sleep(cfg.FaultFor)
		// Repair even if the run is over.
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		desc, err = n.Stop(rctx)
		if desc != "" || err != nil {
			if err != nil {
				h.Event(n.Name(), "error", fmt.Sprintf("%s: %v", desc, err))
				cfg.Logf("nemesis %s: %s: %v", n.Name(), desc, err)
			} else {
				h.Event(n.Name(), "stop", desc)
				cfg.Logf("nemesis %s: %s", n.Name(), desc)
			}
		}
		if !c.Attached() {
			if err := c.WaitConverged(rctx, nodeproc.ConvergeTimeout); err != nil {
				h.Event(n.Name(), "error", "cluster did not converge after repair: "+err.Error())
				cfg.Logf("cluster did not converge after %s: %v", n.Name(), err)
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// checkLogs fails on a Go panic, fatal error or data race in a node log.
func checkLogs(c *Cluster) CheckResult {
	cr := CheckResult{Checker: "node logs (no panic, fatal error or data race)", Valid: "yes"}
	for _, p := range c.Nodes {
		if bad := p.CrashLines(); bad != "" {
			first, _, _ := strings.Cut(bad, "\n")
			cr.Valid = "no"
			cr.Problems = append(cr.Problems, fmt.Sprintf("%s: %s", p.ID, first))
		}
	}
	return cr
}

// WriteSummary prints the result for a person.
func (r *Result) WriteSummary(w io.Writer) {
	verdict := "PASS"
	if !r.Valid {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "chaos %s: workload %s, nemeses %v, %d nodes, %d shards, seed %d, ran %s\n",
		verdict, r.Workload, r.Nemeses, r.Nodes, r.Shards, r.Seed, r.Duration)
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "  skipped: %s\n", s)
	}
	fs := make([]string, 0, len(r.Ops))
	for f := range r.Ops {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	fmt.Fprintf(w, "operations:\n")
	for _, f := range fs {
		m := r.Ops[f]
		fmt.Fprintf(w, "  %-6s ok %6d   failed %6d   indeterminate %5d\n", f, m[OK], m[Fail], m[Info])
	}
	faults := map[string]int{}
	for _, e := range r.Faults {
		if e.Action == "start" {
			faults[e.Nemesis]++
		}
	}
	total := 0
	for _, n := range faults {
		total += n
	}
	fmt.Fprintf(w, "faults injected: %d", total)
	for _, n := range NemesisNames {
		if faults[n] > 0 {
			fmt.Fprintf(w, "  %s×%d", n, faults[n])
		}
	}
	fmt.Fprintln(w)
	for _, e := range r.Faults {
		if e.Action == "error" {
			fmt.Fprintf(w, "  nemesis error at %.1fs: %s: %s\n", float64(e.At)/1e9, e.Nemesis, e.Detail)
		}
	}
	fmt.Fprintf(w, "checks:\n")
	for _, c := range r.Checks {
		fmt.Fprintf(w, "  %-50s %s\n", c.Checker, map[string]string{"yes": "valid", "no": "VIOLATION", "unknown": "UNKNOWN"}[c.Valid])
		keys := make([]string, 0, len(c.Details))
		for k := range c.Details {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if len(keys) > 0 {
			parts := make([]string, len(keys))
			for i, k := range keys {
				parts[i] = fmt.Sprintf("%s=%v", k, c.Details[k])
			}
			fmt.Fprintf(w, "      %s\n", strings.Join(parts, " "))
		}
		for _, p := range c.Problems {
			fmt.Fprintf(w, "      problem: %s\n", p)
		}
		for _, a := range c.Artifacts {
			fmt.Fprintf(w, "      see %s\n", a)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	if r.Files["result"] != "" {
		fmt.Fprintf(w, "history: %s\nresult:  %s\n", r.Files["history"], r.Files["result"])
	}
}
