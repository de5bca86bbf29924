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

// chaosCommands are the subcommands of "raftkv chaos".
var chaosCommands = subcommands{
	group: "chaos",
	help: cmdHelpText{
		summary: "fault injection: checked workloads under nemeses, failover measurement",
		description: `Fault injection against real raftkv processes that this command starts (on
127.0.0.1, or in network namespaces when a partition is wanted and it runs
as root) and stops again.`,
		examples: []string{
			"raftkv chaos run --workload register --nemesis all --duration 60s",
			"raftkv chaos run --workload set --nemesis kill,pause --duration 2m --out /tmp/chaos",
			"raftkv chaos run --workload bank --nemesis kill,pause --duration 60s",
			"raftkv chaos failover --rounds 10 --svg failover.svg",
			"raftkv chaos steady --duration 60s --clients 64",
		},
	},
	list: []commandEntry{
		{"run", &chaosRunHelp, chaosRun},
		{"failover", &chaosFailoverHelp, chaosFailover},
		{"steady", &chaosSteadyHelp, chaosSteady},
	},
}

func cmdChaos(args []string, stdout, stderr io.Writer) int {
	return chaosCommands.run(args, stdout, stderr)
}

// chaosFlagsTitle heads the flags every chaos subcommand shares.
const chaosFlagsTitle = "Cluster flags (every chaos subcommand)"

// chaosFlags are the flags every chaos subcommand shares.
type chaosFlags struct {
	*command
	bin    string
	nodes  int
	shards int
	quiet  bool
	extra  string
}

// newChaosCommand creates a chaos subcommand with the shared flags already
// registered; -o json prints the result as JSON instead of the summary
// (--json, the old spelling, still works).
func newChaosCommand(name string, help cmdHelpText, stdout, stderr io.Writer) *chaosFlags {
	f := &chaosFlags{command: newCommand("chaos "+name, help, stdout, stderr)}
	f.outputFlag(true)
	f.section(chaosFlagsTitle, func(fs *flag.FlagSet) {
		fs.StringVar(&f.bin, "bin", "", "raftkv binary to run as the nodes (default: this executable)")
		fs.IntVar(&f.nodes, "nodes", 3, "nodes to start")
		fs.IntVar(&f.shards, "shards", 4, "data shards")
		fs.BoolVar(&f.quiet, "quiet", false, "no progress lines on stderr")
		fs.StringVar(&f.extra, "server-args", "", "extra flags for every node, space separated (e.g. \"--heartbeat-timeout 500ms\")")
	})
	return f
}

// parse parses args (chaos subcommands take no arguments) and finds the
// binary to run. ok is false when the command must stop and exit with code.
func (f *chaosFlags) parse(args []string) (int, bool) {
	pos, code, ok := f.command.parse(args)
	if !ok {
		return code, false
	}
	if len(pos) > 0 {
		return f.usageError("unexpected argument %q", pos[0]), false
	}
	if f.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return f.fail(err), false
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

var chaosRunHelp = cmdHelpText{
	usage:   "raftkv chaos run [flags]",
	summary: "a checked workload under nemeses; exits 1 on any violation",
	description: `Runs a workload against a cluster it starts, while nemeses inject faults:
register checks linearizability with porcupine, set that no acknowledged add
is lost, bank that cross-shard transfers keep the total. Nemeses: kill,
pause, leader-transfer, leave-join, partition, or all. Writes history.json,
result.json and, on a violation, linearizability.html to --out. Exits 1 on
any violation.`,
	examples: []string{
		"raftkv chaos run --workload register --nemesis all --duration 60s",
		"raftkv chaos run --workload bank --nemesis kill,pause --duration 60s -o json",
	},
}

func chaosRun(args []string, stdout, stderr io.Writer) int {
	f := newChaosCommand("run", chaosRunHelp, stdout, stderr)
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
		return f.fail(err)
	}
	if f.json() {
		printChaosJSON(stdout, res)
	} else {
		res.WriteSummary(stdout)
	}
	if !res.Valid {
		return 1
	}
	return 0
}

var chaosFailoverHelp = cmdHelpText{
	usage:   "raftkv chaos failover [flags]",
	summary: "kill or isolate a shard's leader under write load, round after round",
	description: `SIGKILLs (or with --fault partition, isolates) the leader of a shard under
steady write load, round after round. Prints the time to a new leader, the
write-unavailability window, the catch-up time, medians and availability,
and writes an SVG timeline.`,
	examples: []string{
		"raftkv chaos failover --rounds 10 --svg failover.svg",
		"sudo raftkv chaos failover --fault partition",
	},
}

func chaosFailover(args []string, stdout, stderr io.Writer) int {
	f := newChaosCommand("failover", chaosFailoverHelp, stdout, stderr)
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
		if f.json() {
			printChaosJSON(stdout, res)
		} else {
			res.WriteTable(stdout)
		}
	}
	if err != nil {
		return f.fail(err)
	}
	return 0
}

var chaosSteadyHelp = cmdHelpText{
	usage:       "raftkv chaos steady [flags]",
	summary:     "write load without faults; counts leader changes",
	description: "Writes from --clients writers for --duration without faults and counts the leader changes, which should be none.",
	examples:    []string{"raftkv chaos steady --duration 60s --clients 64"},
}

func chaosSteady(args []string, stdout, stderr io.Writer) int {
	f := newChaosCommand("steady", chaosSteadyHelp, stdout, stderr)
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
		return f.fail(err)
	}
	if f.json() {
		printChaosJSON(stdout, res)
	} else {
		res.WriteSummary(stdout)
	}
	return 0
}
