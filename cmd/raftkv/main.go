// Command raftkv is the raftkv server and its command-line client in one
// binary: "raftkv serve" runs a node, the other commands talk to a running
// cluster over its HTTP API (see package client).
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

// commandFunc runs one command. It returns the process exit code: 0 on
// success, 1 when the operation failed, 2 on a usage error.
type commandFunc func(args []string, stdout, stderr io.Writer) int

type commandEntry struct {
	name    string
	summary string
	run     commandFunc
}

// commands is the dispatch table, in the order the help lists them. It is
// filled in init because the help command refers back to it.
var commands []commandEntry

func init() {
	commands = []commandEntry{
		{"serve", "run a raftkv node", func(args []string, _, _ io.Writer) int { return runServe(args) }},
		{"put", "set a key (value from the argument or stdin)", cmdPut},
		{"get", "print a key's value", cmdGet},
		{"del", "delete a key", cmdDel},
		{"list", "list keys by prefix", cmdList},
		{"txn", "run a transaction from a JSON file or stdin", cmdTxn},
		{"cluster", "cluster status, join, leave, transfer-leadership", cmdCluster},
		{"chaos", "fault injection: checked workloads under nemeses, failover measurement", cmdChaos},
		{"snapshot", "save, inspect and restore backups", cmdSnapshot},
		{"bench", "measure throughput and latency against a cluster", cmdBench},
		{"version", "print the version", cmdVersion},
		{"help", "show help for a command", cmdHelp},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches args (without the program name) to a command.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printMainUsage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		printMainUsage(stdout)
		return 0
	case "-version", "--version":
		return cmdVersion(nil, stdout, stderr)
	}
	if c, ok := lookupCommand(args[0]); ok {
		return c.run(args[1:], stdout, stderr)
	}
	if strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "Error: flag %s before the command; flags go after it, e.g. 'raftkv get KEY --endpoints ADDR'\n", args[0])
		return 2
	}
	fmt.Fprintf(stderr, "Error: unknown command %q\nRun 'raftkv --help' for the list of commands.\n", args[0])
	return 2
}

func lookupCommand(name string) (commandEntry, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return commandEntry{}, false
}

func printMainUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString(`raftkv is a Raft-replicated key-value store. One binary runs a node
("raftkv serve") and is the command-line client for a running cluster.

Usage:
  raftkv <command> [arguments] [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Client commands take these flags:
  --endpoints ADDR[,ADDR...]  node HTTP addresses, tried in order when one is down
                              (env RAFTKV_ENDPOINTS, default 127.0.0.1:8080)
  --timeout DURATION          deadline for the command (default 5s)
  -o text|json                output format (default text)

Examples:
  raftkv serve
  raftkv put greeting hello
  raftkv get greeting
  raftkv list --endpoints 127.0.0.1:8080,127.0.0.1:8081 users/
  raftkv cluster status

Run 'raftkv <command> --help' for details on a command.
`)
	io.WriteString(w, b.String())
}

func cmdHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printMainUsage(stdout)
		return 0
	}
	c, ok := lookupCommand(args[0])
	if !ok || c.name == "help" {
		fmt.Fprintf(stderr, "Error: unknown command %q\nRun 'raftkv --help' for the list of commands.\n", args[0])
		return 2
	}
	return c.run(append(args[1:], "--help"), stdout, stderr)
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprintln(stdout, "Usage: raftkv version\n\nPrints the raftkv version, the source revision and the Go version.")
			return 0
		}
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "Error: unexpected argument %q\nUsage: raftkv version\n", args[0])
		return 2
	}
	rev := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
	}
	if rev != "" {
		fmt.Fprintf(stdout, "raftkv %s (revision %s, %s)\n", version, rev, runtime.Version())
	} else {
		fmt.Fprintf(stdout, "raftkv %s (%s)\n", version, runtime.Version())
	}
	return 0
}
