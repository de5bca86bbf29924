package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// FailoverConfig describes a failover measurement.
type FailoverConfig struct {
	Nodes     int
	Shards    int
	Bin       string
	ExtraArgs []string
	// Fault is "kill" (SIGKILL the leader, restart it after Down) or
	// "partition" (cut the leader off from the other nodes, heal after Down;
	// root only).
	Fault  string
	Rounds int
	// Writers run the steady load (each owns one shard); Think is their
	// pause between writes.
	Writers int
	Think   time.Duration
	// Down is how long the leader stays dead or cut off; Settle is the quiet
	// time before each fault.
	Down   time.Duration
	Settle time.Duration
	// MTBF is the stated mean time between failures of one node, for the
	// availability figure.
	MTBF time.Duration
	// SVG, when set, is where the timeline is written.
	SVG string
	// Dir, when set, holds the nodes' data dirs and logs and is kept.
	Dir  string
	Logf func(format string, args ...any)
}

// Round is one fault and what it cost.
type Round struct {
	N      int    `json:"round"`
	Shard  string `json:"shard"`
	Victim string `json:"victim"`
	// AlsoLed lists the other shards the victim led at the time of the fault.
	AlsoLed []string `json:"also_led,omitempty"`
	FaultAt float64  `json:"fault_at_s"`
	// DetectMs: fault → a surviving node reports, in its event stream
	// (GET /v1/events), that it became leader of Shard.
	DetectMs float64 `json:"detect_ms"`
	// Events: what the surviving nodes' event streams said about Shard from
	// the fault to its new leader (candidacies with their cause, state and
	// leader changes, failed heartbeats).
	Events []RoundEvent `json:"events,omitempty"`
	// UnavailMs: last ok write of Shard before the fault → first after.
	UnavailMs float64 `json:"unavailable_ms"`
	// AlsoLedUnavailMs: the same for the shards in AlsoLed.
	AlsoLedUnavailMs []float64 `json:"also_led_unavailable_ms,omitempty"`
	// SurvivorMaxGapMs: longest gap of ok writes of any shard whose leader
	// survived, over the same interval.
	SurvivorMaxGapMs float64 `json:"survivor_max_gap_ms"`
	// RepairAt: the victim was restarted (kill) or the partition healed.
	RepairAt float64 `json:"repair_at_s"`
	// LiveMs: restart → the process answers /livez (kill only).
	LiveMs float64 `json:"live_ms,omitempty"`
	// CatchUpMs: repair → the victim's applied index reaches the leader's
	// commit index in every group.
	CatchUpMs float64 `json:"catch_up_ms"`
	Error     string  `json:"error,omitempty"`
}

// FailoverResult is the whole measurement.
type FailoverResult struct {
	Fault  string  `json:"fault"`
	Nodes  int     `json:"nodes"`
	Shards int     `json:"shards"`
	Rounds []Round `json:"rounds"`
	// BaselineMaxGapMs is the longest gap of ok writes on any shard during
	// the fault-free warm-up, for comparison with SurvivorMaxGapMs.
	BaselineMaxGapMs float64 `json:"baseline_max_gap_ms"`
	MedianDetectMs   float64 `json:"median_detect_ms"`
	MedianUnavailMs  float64 `json:"median_unavailable_ms"`
	// MedianAllUnavailMs counts every shard the victim led, not only the
	// target.
	MedianAllUnavailMs float64 `json:"median_unavailable_all_led_ms"`
	MedianCatchUpMs    float64 `json:"median_catch_up_ms"`
	MaxSurvivorGapMs   float64 `json:"max_survivor_gap_ms"`
	MTBFHours          float64 `json:"mtbf_hours"`
	// Availability = MTBF / (MTBF + MTTR), MTTR = the median window.
	Availability float64 `json:"availability"`
	WritesOK     int     `json:"writes_ok"`
	WritesFailed int     `json:"writes_not_ok"`
	SVG          string  `json:"svg,omitempty"`
}

func (cfg *FailoverConfig) setDefaults() {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Fault == "" {
		cfg.Fault = "kill"
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 5
	}
	if cfg.Writers == 0 {
		cfg.Writers = 8
	}
	if cfg.Down == 0 {
		cfg.Down = 2 * time.Second
	}
	if cfg.Settle == 0 {
		cfg.Settle = 2 * time.Second
	}
	if cfg.MTBF == 0 {
		cfg.MTBF = 30 * 24 * time.Hour
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
}

// Failover starts a cluster, puts a steady write load on it and, round after
// round, takes out the leader of one shard (round robin) and measures the
// recovery. Every process and namespace it started is gone when it returns.
func Failover(ctx context.Context, cfg FailoverConfig) (*FailoverResult, error) {
	cfg.setDefaults()
	switch cfg.Fault {
	case "kill":
	case "partition":
		if err := NetnsSupported(); err != nil {
			return nil, fmt.Errorf("%w: partition failover: %v", errSkip, err)
		}
	default:
		return nil, fmt.Errorf("unknown fault %q (kill or partition)", cfg.Fault)
	}
	cfg.Logf("starting %d nodes, %d shards", cfg.Nodes, cfg.Shards)
	c, err := StartCluster(ctx, ClusterOptions{Nodes: cfg.Nodes, Shards: cfg.Shards, Bin: cfg.Bin, Dir: cfg.Dir,
		ExtraArgs: cfg.ExtraArgs, Netns: cfg.Fault == "partition", Logf: cfg.Logf})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	h := NewHistory()
	g := &loadGen{c: c, h: h, writers: max(cfg.Writers, c.Shards), think: cfg.Think}
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); g.run(lctx) }()
	finishLoad := sync.OnceFunc(func() { stopLoad(); <-loadDone })
	defer finishLoad()

	watcher := watchRaftEvents(ctx, c.Nodes)
	defer watcher.close()

	res := &FailoverResult{Fault: cfg.Fault, Nodes: len(c.Nodes), Shards: c.Shards, MTBFHours: cfg.MTBF.Hours()}
	warm := h.Now()
	if !sleepCtx(ctx, 3*time.Second) {
		return nil, ctx.Err()
	}
	var baseline time.Duration
	ws := g.snapshot()
	for i := 1; i <= c.Shards; i++ {
		s := fmt.Sprintf("shard-%d", i)
		baseline = max(baseline, maxGap(okTimes(ws, s), warm+int64(time.Second), h.Now()))
	}
	res.BaselineMaxGapMs = ms(baseline)
	cfg.Logf("warm-up: longest gap between ok writes of one shard %.0f ms", res.BaselineMaxGapMs)

	for r := 1; r <= cfg.Rounds && ctx.Err() == nil; r++ {
		round := failoverRound(ctx, &cfg, c, h, watcher, r)
		res.Rounds = append(res.Rounds, round)
		if round.Error != "" {
			cfg.Logf("round %d: %s", r, round.Error)
		}
		if err := c.WaitConverged(ctx, nodeproc.ConvergeTimeout); err != nil {
			return res, fmt.Errorf("round %d: cluster did not converge: %w", r, err)
		}
		sleepCtx(ctx, cfg.Settle)
	}
	finishLoad()
	measureRounds(res, g.snapshot(), c)
	if cfg.SVG != "" {
		if err := writeTimelineSVG(cfg.SVG, g.snapshot(), h.Events(), res); err != nil {
			return res, err
		}
		res.SVG = cfg.SVG
	}
	return res, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// failoverRound takes out the leader of shard-((r-1) mod N + 1) and waits
// for the new leader, the repair and the catch-up. Write windows are filled
// in later by measureRounds, from the full write log.
func failoverRound(ctx context.Context, cfg *FailoverConfig, c *Cluster, h *History, watcher *raftWatcher, r int) Round {
	shard := fmt.Sprintf("shard-%d", 1+(r-1)%c.Shards)
	round := Round{N: r, Shard: shard}
	victim, err := c.LeaderOf(ctx, shard)
	if err != nil {
		round.Error = err.Error()
		return round
	}
	round.Victim = victim.ID
	if st, err := victim.Status(ctx); err == nil {
		for _, gr := range st.Groups {
			if gr.State == "Leader" && gr.Name != shard && gr.Name != "meta" {
				round.AlsoLed = append(round.AlsoLed, gr.Name)
			}
		}
	}
	t0 := time.Now()
	if cfg.Fault == "kill" {
		err = victim.Kill()
		h.Event("kill", "start", "SIGKILL "+victim.ID+" (leader of "+shard+")")
	} else {
		err = c.Partition([]*nodeproc.Node{victim})
		h.Event("partition", "start", "isolate "+victim.ID+" (leader of "+shard+")")
	}
	round.FaultAt = float64(h.Now()) / 1e9
	if err != nil {
		round.Error = err.Error()
		return round
	}
	cfg.Logf("round %d: %s %s, leader of %s (also %v)", r, cfg.Fault, victim.ID, shard, round.AlsoLed)
	if e, err := watcher.waitLeader(ctx, shard, victim.ID, t0, t0.Add(30*time.Second)); err == nil {
		round.DetectMs = ms(e.At.Sub(t0))
		round.Events = roundEvents(watcher.between(shard, t0, e.At), t0)
		for _, ev := range round.Events {
			cfg.Logf("round %d: %s %s", r, shard, ev)
		}
	} else {
		round.Error = err.Error()
	}
	sleepCtx(ctx, cfg.Down-time.Since(t0))

	t1 := time.Now()
	if cfg.Fault == "kill" {
		err = victim.Restart()
		round.LiveMs = ms(time.Since(t1))
		h.Event("kill", "stop", "restarted "+victim.ID)
	} else {
		err = c.Heal()
		h.Event("partition", "stop", "healed")
	}
	round.RepairAt = float64(h.Now()) / 1e9
	if err != nil {
		round.Error = err.Error()
		return round
	}
	if d, err := waitCaughtUp(ctx, c, victim, t1); err == nil {
		round.CatchUpMs = ms(d)
	} else if round.Error == "" {
		round.Error = err.Error()
	}
	cfg.Logf("round %d: new leader after %.0f ms; %s caught up %.0f ms after repair", r, round.DetectMs, victim.ID, round.CatchUpMs)
	return round
}

// waitCaughtUp polls until, in every group, victim's applied index is at
// least the leader's commit index read just before it.
func waitCaughtUp(ctx context.Context, c *Cluster, victim *nodeproc.Node, t1 time.Time) (time.Duration, error) {
	deadline := t1.Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		last = caughtUp(ctx, c, victim)
		if last == nil {
			return time.Since(t1), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	if last == nil {
		last = ctx.Err()
	}
	return 0, fmt.Errorf("%s not caught up within 60s: %w", victim.ID, last)
}

func caughtUp(ctx context.Context, c *Cluster, victim *nodeproc.Node) error {
	commits := map[string]uint64{}
	for _, gname := range c.Groups() {
		l, err := c.LeaderOf(ctx, gname)
		if err != nil {
			return err
		}
		if l == victim {
			continue // it leads again: trivially up to date
		}
		st, err := getStatusTimeout(ctx, l.HTTPAddr, time.Second)
		if err != nil {
			return err
		}
		g, _ := st.Group(gname)
		commits[gname] = g.CommitIndex
	}
	st, err := getStatusTimeout(ctx, victim.HTTPAddr, time.Second)
	if err != nil {
		return err
	}
	for gname, ci := range commits {
		g, ok := st.Group(gname)
		if !ok {
			return fmt.Errorf("%s does not know %s yet", victim.ID, gname)
		}
		if g.AppliedIndex < ci {
			return fmt.Errorf("%s %s applied %d < leader commit %d", victim.ID, gname, g.AppliedIndex, ci)
		}
	}
	return nil
}

// measureRounds fills in the write windows and the summary figures.
func measureRounds(res *FailoverResult, ws []write, c *Cluster) {
	perShard := map[string][]int64{}
	for i := 1; i <= c.Shards; i++ {
		s := fmt.Sprintf("shard-%d", i)
		perShard[s] = okTimes(ws, s)
	}
	var detect, unavail, all, catchup []float64
	for i := range res.Rounds {
		r := &res.Rounds[i]
		if r.Victim == "" {
			continue
		}
		from, to := int64(r.FaultAt*1e9), int64(r.RepairAt*1e9)
		if to <= from {
			to = from + int64(5*time.Second)
		}
		r.UnavailMs = ms(maxGap(perShard[r.Shard], from, to))
		all = append(all, r.UnavailMs)
		r.AlsoLedUnavailMs = nil
		for _, s := range r.AlsoLed {
			v := ms(maxGap(perShard[s], from, to))
			r.AlsoLedUnavailMs = append(r.AlsoLedUnavailMs, v)
			all = append(all, v)
		}
		r.SurvivorMaxGapMs = 0
		for s, times := range perShard {
			if s != r.Shard && !slices.Contains(r.AlsoLed, s) {
				r.SurvivorMaxGapMs = max(r.SurvivorMaxGapMs, ms(maxGap(times, from, to)))
			}
		}
		res.MaxSurvivorGapMs = max(res.MaxSurvivorGapMs, r.SurvivorMaxGapMs)
		if r.Error == "" {
			detect = append(detect, r.DetectMs)
			catchup = append(catchup, r.CatchUpMs)
		}
		unavail = append(unavail, r.UnavailMs)
	}
	res.MedianDetectMs = median(detect)
	res.MedianUnavailMs = median(unavail)
	res.MedianAllUnavailMs = median(all)
	res.MedianCatchUpMs = median(catchup)
	mttr := res.MedianUnavailMs / 1000 / 3600
	if res.MTBFHours > 0 {
		res.Availability = res.MTBFHours / (res.MTBFHours + mttr)
	}
	for _, w := range ws {
		if w.OK {
			res.WritesOK++
		} else {
			res.WritesFailed++
		}
	}
}

// WriteTable prints the rounds and the summary.
func (res *FailoverResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "failover by %s: %d nodes, %d shards, %d rounds, %d ok writes (%d not ok)\n",
		res.Fault, res.Nodes, res.Shards, len(res.Rounds), res.WritesOK, res.WritesFailed)
	fmt.Fprintf(w, "%5s %-8s %-7s %10s %14s %15s %12s %12s  %s\n", "round", "shard", "victim",
		"detect_ms", "unavailable_ms", "survivor_gap_ms", "live_ms", "catch_up_ms", "also led (unavailable ms)")
	for _, r := range res.Rounds {
		also := ""
		for i, s := range r.AlsoLed {
			if i < len(r.AlsoLedUnavailMs) {
				also += fmt.Sprintf("%s (%.0f) ", s, r.AlsoLedUnavailMs[i])
			}
		}
		fmt.Fprintf(w, "%5d %-8s %-7s %10.0f %14.0f %15.0f %12.0f %12.0f  %s\n", r.N, r.Shard, r.Victim,
			r.DetectMs, r.UnavailMs, r.SurvivorMaxGapMs, r.LiveMs, r.CatchUpMs, also)
		if r.Error != "" {
			fmt.Fprintf(w, "      error: %s\n", r.Error)
		}
	}
	fmt.Fprintf(w, "median: detect %.0f ms, unavailable %.0f ms (every shard the victim led: %.0f ms), catch-up %.0f ms\n",
		res.MedianDetectMs, res.MedianUnavailMs, res.MedianAllUnavailMs, res.MedianCatchUpMs)
	fmt.Fprintf(w, "shards whose leader survived: longest gap %.0f ms (fault-free warm-up: %.0f ms)\n",
		res.MaxSurvivorGapMs, res.BaselineMaxGapMs)
	fmt.Fprintf(w, "availability of a shard = MTBF / (MTBF + MTTR) = %.0f h / (%.0f h + %.3f s) = %.8f\n",
		res.MTBFHours, res.MTBFHours, res.MedianUnavailMs/1000, res.Availability)
	if res.SVG != "" {
		fmt.Fprintf(w, "timeline: %s\n", res.SVG)
	}
}

// SteadyConfig describes a fault-free load run.
type SteadyConfig struct {
	Nodes, Shards int
	Bin           string
	ExtraArgs     []string
	Clients       int
	Duration      time.Duration
	Logf          func(format string, args ...any)
}

// SteadyResult counts leader changes under load without faults.
type SteadyResult struct {
	Clients  int     `json:"clients"`
	Duration string  `json:"duration"`
	WritesOK int     `json:"writes_ok"`
	NotOK    int     `json:"writes_not_ok"`
	PerSec   float64 `json:"writes_per_second"`
	// TermIncreases per group: the highest term any node reports, after
	// minus before. 0 everywhere = no elections.
	TermIncreases map[string]uint64 `json:"term_increases"`
	// LeaderChanges per node: the sum over groups of the leader_changes
	// counter, after minus before.
	LeaderChanges map[string]uint64 `json:"leader_changes"`
	Elections     uint64            `json:"elections"`
}

// Steady runs Clients writers for Duration against a fresh cluster and
// counts leader changes.
func Steady(ctx context.Context, cfg SteadyConfig) (*SteadyResult, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	cfg.Logf("starting %d nodes", cfg.Nodes)
	c, err := StartCluster(ctx, ClusterOptions{Nodes: cfg.Nodes, Shards: cfg.Shards, Bin: cfg.Bin, ExtraArgs: cfg.ExtraArgs, Logf: cfg.Logf})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	before, err := leaderStats(ctx, c)
	if err != nil {
		return nil, err
	}
	h := NewHistory()
	g := &loadGen{c: c, h: h, writers: cfg.Clients}
	lctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	cfg.Logf("%d clients writing for %s", cfg.Clients, cfg.Duration)
	t0 := time.Now()
	g.run(lctx)
	cancel()
	el := time.Since(t0)
	after, err := leaderStats(ctx, c)
	if err != nil {
		return nil, err
	}
	res := &SteadyResult{Clients: cfg.Clients, Duration: el.Round(time.Millisecond).String(),
		TermIncreases: map[string]uint64{}, LeaderChanges: map[string]uint64{}}
	for _, w := range g.snapshot() {
		if w.OK {
			res.WritesOK++
		} else {
			res.NotOK++
		}
	}
	res.PerSec = float64(res.WritesOK) / el.Seconds()
	for gname, t := range after.terms {
		res.TermIncreases[gname] = t - before.terms[gname]
		res.Elections += t - before.terms[gname]
	}
	for n, v := range after.changes {
		res.LeaderChanges[n] = v - before.changes[n]
	}
	return res, nil
}

type leaderStat struct {
	terms   map[string]uint64 // group → highest term seen
	changes map[string]uint64 // node → sum of leader_changes
}

func leaderStats(ctx context.Context, c *Cluster) (*leaderStat, error) {
	s := &leaderStat{terms: map[string]uint64{}, changes: map[string]uint64{}}
	for _, p := range c.Nodes {
		st, err := p.Status(ctx)
		if err != nil {
			return nil, err
		}
		for _, g := range st.Groups {
			s.terms[g.Name] = max(s.terms[g.Name], g.Term)
			s.changes[p.ID] += g.LeaderChanges
		}
	}
	return s, nil
}

// WriteSummary prints the steady-load result.
func (r *SteadyResult) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "steady load: %d clients for %s, %d ok writes (%.0f/s), %d not ok\n",
		r.Clients, r.Duration, r.WritesOK, r.PerSec, r.NotOK)
	names := make([]string, 0, len(r.TermIncreases))
	for g := range r.TermIncreases {
		names = append(names, g)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "elections (term increases): %d total;", r.Elections)
	for _, g := range names {
		fmt.Fprintf(w, " %s=%d", g, r.TermIncreases[g])
	}
	fmt.Fprintf(w, "\nleader changes seen per node:")
	nodes := make([]string, 0, len(r.LeaderChanges))
	for n := range r.LeaderChanges {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		fmt.Fprintf(w, " %s=%d", n, r.LeaderChanges[n])
	}
	fmt.Fprintln(w)
}

// IsSkip reports whether err means "cannot run here" (e.g. not root for a
// partition) rather than a failure.
func IsSkip(err error) bool { return errors.Is(err, errSkip) }
