package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftkv/raftkv/client"
)

// Defaults of the client flags.
const (
	defaultEndpoint = "127.0.0.1:8080"
	defaultTimeout  = 5 * time.Second
	envEndpoints    = "RAFTKV_ENDPOINTS"
)

// stdin is where put reads a value given neither as an argument; tests
// replace it.
var stdin io.Reader = os.Stdin

// cmdHelpText is what --help prints for one command.
type cmdHelpText struct {
	usage       string   // e.g. "raftkv put KEY [VALUE] [flags]"
	description string   // one or more sentences
	examples    []string // full command lines
}

// invocation holds the parsing state of one client command: its flag set,
// the global client flags, and where its output goes.
type invocation struct {
	name   string // "put", "cluster join"
	help   cmdHelpText
	fs     *flag.FlagSet
	stdout io.Writer
	stderr io.Writer

	endpoints string
	timeout   time.Duration
	output    string
}

// newInvocation creates the flag set for a command with the global client
// flags already registered; the command adds its own before parse.
func newInvocation(name string, help cmdHelpText, stdout, stderr io.Writer) *invocation {
	inv := &invocation{name: name, help: help, stdout: stdout, stderr: stderr}
	inv.fs = flag.NewFlagSet("raftkv "+name, flag.ContinueOnError)
	inv.fs.SetOutput(io.Discard) // errors and help are printed by parse
	inv.fs.Usage = func() {}
	endpoints := os.Getenv(envEndpoints)
	if strings.TrimSpace(endpoints) == "" {
		endpoints = defaultEndpoint
	}
	inv.fs.StringVar(&inv.endpoints, "endpoints", endpoints,
		"comma-separated node HTTP `ADDRS`, tried in order when one is down (env "+envEndpoints+")")
	inv.fs.DurationVar(&inv.timeout, "timeout", defaultTimeout, "deadline for the whole command")
	inv.fs.StringVar(&inv.output, "o", "text", "output format")
	inv.fs.StringVar(&inv.output, "output", "text", "same as -o")
	return inv
}

// parse parses args, allowing flags before, between and after positional
// arguments ("--" ends flag parsing). ok is false when the command must
// stop and exit with code: after --help (0) or a usage error (2).
func (inv *invocation) parse(args []string) (positional []string, code int, ok bool) {
	for {
		err := inv.fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			inv.printHelp(inv.stdout)
			return nil, 0, false
		}
		if err != nil {
			return nil, inv.usageError("%v", err), false
		}
		rest := inv.fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	if inv.output != "text" && inv.output != "json" {
		return nil, inv.usageError("-o must be text or json, not %q", inv.output), false
	}
	if inv.timeout <= 0 {
		return nil, inv.usageError("--timeout must be positive"), false
	}
	if len(inv.endpointList()) == 0 {
		return nil, inv.usageError("--endpoints is empty"), false
	}
	return positional, 0, true
}

func (inv *invocation) endpointList() []string {
	var out []string
	for _, ep := range strings.Split(inv.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			out = append(out, ep)
		}
	}
	return out
}

// client returns a client for the --endpoints and --timeout flags.
func (inv *invocation) client() *client.Client {
	return client.New(inv.endpointList(), client.WithTimeout(inv.timeout), client.WithUserAgent("raftkv-cli/"+version))
}

func (inv *invocation) json() bool { return inv.output == "json" }

// usageError reports a usage mistake on stderr and returns exit code 2.
func (inv *invocation) usageError(format string, args ...any) int {
	fmt.Fprintf(inv.stderr, "Error: %s\nUsage: %s\nRun 'raftkv %s --help' for more.\n",
		fmt.Sprintf(format, args...), inv.help.usage, inv.name)
	return 2
}

// fail reports a failed operation on stderr and returns exit code 1.
func (inv *invocation) fail(err error) int {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		fmt.Fprintf(inv.stderr, "Error: %s: %s\n", apiErr.Code, apiErr.Message)
	} else {
		fmt.Fprintf(inv.stderr, "Error: %v\n", err)
	}
	if errors.Is(err, client.ErrIndeterminate) {
		fmt.Fprintln(inv.stderr, "Note: the outcome is unknown; the change may or may not have been applied. Check before retrying.")
	}
	return 1
}

func (inv *invocation) printHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", inv.help.usage, inv.help.description)
	var own, global []*flag.Flag
	inv.fs.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "output":
			// printed together with -o
		case "endpoints", "timeout", "o":
			global = append(global, f)
		default:
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, own)
	}
	fmt.Fprintln(w, "\nGlobal flags:")
	printFlags(w, global)
	if len(inv.help.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, ex := range inv.help.examples {
			fmt.Fprintf(w, "  %s\n", ex)
		}
	}
}

// printFlags lists flags in the --name form users type.
func printFlags(w io.Writer, flags []*flag.Flag) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range flags {
		arg, usage := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if f.Name == "o" {
			name, arg = "-o, --output", "text|json"
		}
		if arg != "" {
			name += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, usage)
	}
	tw.Flush()
}

// context returns the context for the command's requests. The client
// applies --timeout itself.
func (inv *invocation) context() context.Context { return context.Background() }

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// isTerminal reports whether v (a reader or writer) is a character device
// such as a terminal.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// subcommands is a command made of subcommands ("raftkv cluster status").
type subcommands struct {
	group string
	list  []commandEntry
}

func (sc subcommands) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: raftkv %s <subcommand> [arguments] [flags]\n\nSubcommands:\n", sc.group)
	for _, s := range sc.list {
		fmt.Fprintf(w, "  %-20s %s\n", s.name, s.summary)
	}
	fmt.Fprintf(w, "\nRun 'raftkv %s <subcommand> --help' for details.\n", sc.group)
}

// run dispatches args to a subcommand; a missing or unknown one is a usage
// error (exit 2).
func (sc subcommands) run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "Error: missing subcommand")
		sc.usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		sc.usage(stdout)
		return 0
	}
	for _, s := range sc.list {
		if s.name == args[0] {
			return s.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "Error: unknown subcommand %q\n", args[0])
	sc.usage(stderr)
	return 2
}
