// Command raftkv is the raftkv server and its command-line client in one
// binary: "raftkv serve" runs a node, the other commands talk to a running
// cluster over its HTTP API (see package client), and "raftkv chaos" starts
// and breaks clusters of its own.
//
// Every command parses its flags the same way (see cmdline.go): the standard
// library's flag package, -name and --name alike, flags anywhere after the
// command, "raftkv CMD --help" for a page with usage, a one-line summary,
// the flags and examples, and exit code 2 on a usage error. Commands that
// print results take -o text|json. Client commands share --endpoints
// (env RAFTKV_ENDPOINTS), --timeout, -o and the HTTPS flags --ca-cert,
// --cert and --key (env RAFTKV_CA_CERT, RAFTKV_CERT, RAFTKV_KEY); every
// serve flag can be set as RAFTKV_<FLAG>. "raftkv certs" makes the CA and
// node certificates that serve's TLS flags take.
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

// commandEntry is one line of a dispatch table. Its summary is help.summary,
// so the command list and the command's own help page say the same.
type commandEntry struct {
	name string
	help *cmdHelpText
	run  commandFunc
}

// commands is the dispatch table, in the order the help lists them. It is
// filled in init because the help command refers back to it.
var commands []commandEntry

func init() {
	commands = []commandEntry{
		{"serve", &serveHelp, runServe},
		{"put", &putHelp, cmdPut},
		{"get", &getHelp, cmdGet},
		{"del", &delHelp, cmdDel},
		{"list", &listHelp, cmdList},
		{"txn", &txnHelp, cmdTxn},
		{"lease", &leaseCommands.help, cmdLease},
		{"cluster", &clusterCommands.help, cmdCluster},
		{"chaos", &chaosCommands.help, cmdChaos},
		{"snapshot", &snapshotCommands.help, cmdSnapshot},
		{"recover", &recoverHelp, cmdRecover},
		{"events", &eventsHelp, cmdEvents},
		{"watch", &watchHelp, cmdWatch},
		{"auth", &authCommands.help, cmdAuth},
		{"certs", &certsCommands.help, cmdCerts},
		{"bench", &benchHelp, cmdBench},
		{"version", &versionHelp, cmdVersion},
		{"help", &helpHelp, cmdHelp},
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
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.help.summary)
	}
	b.WriteString("\nClient commands (put, get, del, list, txn, lease, cluster, snapshot save, auth, bench)\ntake these flags:\n")
	var cf clientFlags
	c := newCommand("", cmdHelpText{}, io.Discard, io.Discard)
	cf.register(c)
	c.printFlags(&b, c.sections[0].names)
	b.WriteString(`
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

var helpHelp = cmdHelpText{
	usage:       "raftkv help [COMMAND [SUBCOMMAND]]",
	summary:     "show help for a command",
	description: "Prints the list of commands, or the help page of COMMAND (the same as 'raftkv COMMAND --help').",
	examples:    []string{"raftkv help put", "raftkv help cluster join"},
}

func cmdHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printMainUsage(stdout)
		return 0
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		c := newCommand("help", helpHelp, stdout, stderr)
		c.printHelp(stdout)
		return 0
	}
	c, ok := lookupCommand(args[0])
	if !ok || c.name == "help" {
		fmt.Fprintf(stderr, "Error: unknown command %q\nRun 'raftkv --help' for the list of commands.\n", args[0])
		return 2
	}
	return c.run(append(args[1:], "--help"), stdout, stderr)
}

var versionHelp = cmdHelpText{
	usage:       "raftkv version",
	summary:     "print the version",
	description: "Prints the raftkv version, the source revision and the Go version.",
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	c := newCommand("version", versionHelp, stdout, stderr)
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q", pos[0])
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
