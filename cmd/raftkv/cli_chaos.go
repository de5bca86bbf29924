package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/chaos"
)

const chaosUsage = `Usage: raftkv chaos <run|failover|steady> [flags]

Fault injection against real raftkv processes that this command starts (on
127.0.0.1, or in network namespaces when a partition is wanted and it runs
as root) and stops again.

  run       a workload (register: linearizability with porcupine; set: no lost
            acknowledged adds; bank: cross-shard transfers keep the total)
            under nemeses (kill, pause, leader-transfer,
            leave-join, partition, or all); exits 1 on any violation
  failover  SIGKILL (or --fault partition: isolate) the leader of a shard under
            steady write load, round after round; prints time to a new leader,
            the write-unavailability window, the catch-up time, medians,
            availability, and writes an SVG timeline
  steady    write load without faults; counts leader changes

Examples:
  raftkv chaos run --workload register --nemesis all --duration 60s
  raftkv chaos run --workload set --nemesis kill,pause --duration 2m --out /tmp/chaos
  raftkv chaos run --workload bank --nemesis kill,pause --duration 60s
  raftkv chaos failover --rounds 10 --svg failover.svg
  raftkv chaos steady --duration 60s --clients 64

Flags of each subcommand: raftkv chaos <subcommand> --help`

func cmdChaos(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, chaosUsage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, chaosUsage)
		return 0
	case "run":
		return chaosRun(args[1:], stdout, stderr)
	case "failover":
		return chaosFailover(args[1:], stdout, stderr)
	case "steady":
		return chaosSteady(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "Error: unknown chaos subcommand %q\n%s\n", args[0], chaosUsage)
	return 2
}

// chaosFlags are the flags every chaos subcommand shares.
type chaosFlags struct {
	fs      *flag.FlagSet
	bin     string
	nodes   int
	shards  int
	jsonOut bool
	quiet   bool
	extra   string
}

func newChaosFlags(name string, stderr io.Writer) *chaosFlags {
	f := &chaosFlags{fs: flag.NewFlagSet("raftkv chaos "+name, flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	f.fs.StringVar(&f.bin, "bin", "", "raftkv binary to run as the nodes (default: this executable)")
	f.fs.IntVar(&f.nodes, "nodes", 3, "nodes to start")
	f.fs.IntVar(&f.shards, "shards", 4, "data shards")
	f.fs.BoolVar(&f.jsonOut, "json", false, "print the JSON result instead of the summary")
	f.fs.BoolVar(&f.quiet, "quiet", false, "no progress lines on stderr")
	f.fs.StringVar(&f.extra, "server-args", "", "extra flags for every node, space separated (e.g. \"--heartbeat-timeout 500ms\")")
	return f
}

func (f *chaosFlags) parse(args []string) (int, bool) {
	if err := f.fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0, false
		}
		return 2, false
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(f.fs.Output(), "Error: unexpected argument %q\n", f.fs.Arg(0))
		return 2, false
	}
	if f.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(f.fs.Output(), "Error: %v\n", err)
			return 1, false
		}
		f.bin = exe
	}
	return 0, true
}

func (f *chaosFlags) logf(stderr io.Writer) func(string, ...any) {
	if f.quiet {
		return nil
	}
	return func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
}

// signalContext is cancelled by SIGINT/SIGTERM, so a run stops early but
// still repairs faults and kills its processes.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func printChaosJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
}

func chaosRun(args []string, stdout, stderr io.Writer) int {
	f := newChaosFlags("run", stderr)
	var cfg chaos.Config
	var nemeses, attach string
	f.fs.StringVar(&cfg.Workload, "workload", "register", "register, set or bank")
	f.fs.StringVar(&nemeses, "nemesis", "kill", "comma-separated nemeses: kill, pause, leader-transfer, leave-join, partition, all, none")
	f.fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long the workload runs")
	f.fs.IntVar(&cfg.MaxOps, "max-ops", 0, "stop after this many operations (0 = no limit)")
	f.fs.IntVar(&cfg.Clients, "clients", 5, "concurrent clients")
	f.fs.IntVar(&cfg.Keys, "keys", 4, "register workload: number of keys")
	f.fs.DurationVar(&cfg.Think, "think", 0, "pause after each operation of a client")
	f.fs.DurationVar(&cfg.Interval, "interval", 3*time.Second, "quiet time between faults")
	f.fs.DurationVar(&cfg.FaultFor, "fault-for", 2*time.Second, "how long each fault lasts")
	f.fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0 = random)")
	f.fs.StringVar(&cfg.OutDir, "out", "", "directory for history.json, result.json and linearizability.html (default: a temp dir)")
	f.fs.DurationVar(&cfg.CheckTimeout, "check-timeout", 2*time.Minute, "time limit of the linearizability check")
	f.fs.StringVar(&attach, "attach", "", "HTTP addresses of a running cluster to use instead of starting one (only leader-transfer makes sense then)")
	if code, ok := f.parse(args); !ok {
		return code
	}
	cfg.Nodes, cfg.Shards, cfg.Bin, cfg.Logf = f.nodes, f.shards, f.bin, f.logf(stderr)
	cfg.ExtraArgs = strings.Fields(f.extra)
	switch nemeses {
	case "all":
		cfg.Nemeses = chaos.NemesisNames
	case "none", "":
	default:
		cfg.Nemeses = strings.Split(nemeses, ",")
	}
	if attach != "" {
		cfg.Attach = strings.Split(attach, ",")
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if f.jsonOut {
		printChaosJSON(stdout, res)
	} else {
		res.WriteSummary(stdout)
	}
	if !res.Valid {
		return 1
	}
	return 0
}

func chaosFailover(args []string, stdout, stderr io.Writer) int {
	f := newChaosFlags("failover", stderr)
	var cfg chaos.FailoverConfig
	f.fs.StringVar(&cfg.Fault, "fault", "kill", "kill (SIGKILL the leader, restart it) or partition (isolate the leader, heal; root only)")
	f.fs.IntVar(&cfg.Rounds, "rounds", 5, "faults to inject, one shard after another")
	f.fs.IntVar(&cfg.Writers, "writers", 8, "concurrent writers of the steady load (each owns one shard)")
	f.fs.DurationVar(&cfg.Think, "think", 5*time.Millisecond, "pause between two writes of one writer")
	f.fs.DurationVar(&cfg.Down, "down", 2*time.Second, "how long the leader stays down or cut off")
	f.fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "quiet time before each fault")
	f.fs.DurationVar(&cfg.MTBF, "mtbf", 30*24*time.Hour, "stated mean time between failures of a node, for availability")
	f.fs.StringVar(&cfg.SVG, "svg", "failover.svg", "where to write the timeline (empty = none)")
	f.fs.StringVar(&cfg.Dir, "dir", "", "keep the nodes' data dirs and logs here (default: a temp dir, removed)")
	if code, ok := f.parse(args); !ok {
		return code
	}
	cfg.Nodes, cfg.Shards, cfg.Bin, cfg.Logf = f.nodes, f.shards, f.bin, f.logf(stderr)
	cfg.ExtraArgs = strings.Fields(f.extra)
	ctx, stop := signalContext()
	defer stop()
	res, err := chaos.Failover(ctx, cfg)
	if chaos.IsSkip(err) {
		fmt.Fprintf(stderr, "skipped: %v\n", err)
		return 0
	}
	if res != nil {
		if f.jsonOut {
			printChaosJSON(stdout, res)
		} else {
			res.WriteTable(stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

func chaosSteady(args []string, stdout, stderr io.Writer) int {
	f := newChaosFlags("steady", stderr)
	var cfg chaos.SteadyConfig
	f.fs.IntVar(&cfg.Clients, "clients", 64, "concurrent writers")
	f.fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long to write")
	if code, ok := f.parse(args); !ok {
		return code
	}
	cfg.Nodes, cfg.Shards, cfg.Bin, cfg.Logf = f.nodes, f.shards, f.bin, f.logf(stderr)
	cfg.ExtraArgs = strings.Fields(f.extra)
	ctx, stop := signalContext()
	defer stop()
	res, err := chaos.Steady(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if f.jsonOut {
		printChaosJSON(stdout, res)
	} else {
		res.WriteSummary(stdout)
	}
	return 0
}
