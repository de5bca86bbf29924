package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/certs"
)

// Defaults of the client flags.
const (
	defaultEndpoint = "127.0.0.1:8080"
	defaultTimeout  = 5 * time.Second
)

// envEndpoints sets --endpoints for every client command.
var envEndpoints = envName("endpoints")

// stdin is where put reads a value given neither as an argument; tests
// replace it.
var stdin io.Reader = os.Stdin

// clientFlags are the flags of every command that talks to a cluster. They
// are registered here and nowhere else: a flag added to register (and, if
// the environment may set it, to its fromEnv call) reaches every client
// command, its help page and the list in 'raftkv --help'.
type clientFlags struct {
	endpoints string
	timeout   time.Duration
	token     string
	// noLeaderRouting keeps every request on --endpoints. By default a
	// key request goes straight to its shard's leader (client.
	// WithLeaderRouting), which falls back to the endpoints when the
	// leaders' own addresses cannot be reached.
	noLeaderRouting bool

	// HTTPS: the CA of the servers' certificates and the client's own
	// certificate, and the config made of them once parsed (nil: none given).
	caCert, cert, key string
	tls               *tls.Config
}

// clientFlagsTitle heads the client flags on help pages.
const clientFlagsTitle = "Client flags"

// register adds the client flags, -o included, to c.
func (cf *clientFlags) register(c *command) {
	c.section(clientFlagsTitle, func(fs *flag.FlagSet) {
		fs.StringVar(&cf.endpoints, "endpoints", defaultEndpoint,
			"comma-separated node HTTP `ADDRS`, tried in order when one is down")
		fs.DurationVar(&cf.timeout, "timeout", defaultTimeout, "deadline for the whole command")
		fs.StringVar(&cf.token, "token", "", "bearer `TOKEN` for a cluster that runs with --auth (prefer RAFTKV_TOKEN: flags show in ps)")
		fs.StringVar(&cf.caCert, "ca-cert", "", "CA `FILE` that signed the nodes' HTTPS certificates; endpoints without a scheme then mean https")
		fs.StringVar(&cf.cert, "cert", "", "client certificate `FILE`, for a cluster that requires one (with --key)")
		fs.StringVar(&cf.key, "key", "", "private key `FILE` of --cert")
		fs.BoolVar(&cf.noLeaderRouting, "no-leader-routing", false,
			"send every request to --endpoints; by default key requests go straight to their shard's leader when its address answers")
		c.outputFlag(false)
	})
	c.fromEnv("endpoints", "token", "ca-cert", "cert", "key", "no-leader-routing")
	c.check(func() error {
		if cf.timeout <= 0 {
			return errors.New("--timeout must be positive")
		}
		if len(cf.endpointList()) == 0 {
			return errors.New("--endpoints is empty")
		}
		if (cf.cert == "") != (cf.key == "") {
			return errors.New("--cert and --key must be given together")
		}
		if cf.caCert != "" || cf.cert != "" {
			cfg, err := certs.ClientTLS(cf.caCert, cf.cert, cf.key)
			if err != nil {
				return err
			}
			cf.tls = cfg
		}
		return nil
	})
}

func (cf *clientFlags) endpointList() []string { return splitList(cf.endpoints) }

// client returns a client for the --endpoints, --timeout, TLS and
// --no-leader-routing flags. Leader routing only changes where key
// requests and transactions go; every other call uses the endpoints.
func (cf *clientFlags) client() *client.Client {
	opts := []client.Option{client.WithTimeout(cf.timeout), client.WithUserAgent("raftkv-cli/" + version), client.WithToken(cf.token)}
	if cf.tls != nil {
		opts = append(opts, client.WithTLS(cf.tls))
	}
	if !cf.noLeaderRouting {
		opts = append(opts, client.WithLeaderRouting())
	}
	return client.New(cf.endpointList(), opts...)
}

// endpointURLs returns the endpoints as base URLs, by the client's rule: a
// bare host:port is https when a TLS flag is given, http otherwise.
func (cf *clientFlags) endpointURLs() []string { return cf.client().Endpoints() }

// invocation is one run of a client command: the command's parse state and
// the client flags.
type invocation struct {
	*command
	clientFlags
}

// newInvocation creates a client command with the client flags already
// registered; the command adds its own before parse.
func newInvocation(name string, help cmdHelpText, stdout, stderr io.Writer) *invocation {
	inv := &invocation{command: newCommand(name, help, stdout, stderr)}
	inv.clientFlags.register(inv.command)
	return inv
}

// context returns the context for the command's requests. The client
// applies --timeout itself.
func (inv *invocation) context() context.Context { return context.Background() }

// apiErrorText is a server error as the CLI says it: the server's message,
// which names the kind of error itself ("not found: key ..."), with the
// code in front only when the message does not already say it.
func apiErrorText(e *client.APIError) string {
	said := strings.ReplaceAll(e.Code, "_", " ")
	if e.Code == "" || strings.HasPrefix(strings.ToLower(e.Message), said) {
		return e.Message
	}
	return e.Code + ": " + e.Message
}

// fail reports a failed operation on stderr and returns exit code 1.
func (c *command) fail(err error) int {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		fmt.Fprintf(c.stderr, "Error: %s\n", apiErrorText(apiErr))
	} else {
		fmt.Fprintf(c.stderr, "Error: %v\n", err)
	}
	if errors.Is(err, client.ErrIndeterminate) {
		fmt.Fprintln(c.stderr, "Note: the outcome is unknown; the change may or may not have been applied. Check before retrying.")
	}
	return 1
}

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
	help  cmdHelpText // usage is filled in; examples are optional
	list  []commandEntry
}

func (sc *subcommands) usage(w io.Writer) {
	fmt.Fprintf(w, "raftkv %s - %s\n\nUsage: raftkv %s <subcommand> [arguments] [flags]\n", sc.group, sc.help.summary, sc.group)
	if sc.help.description != "" {
		fmt.Fprintf(w, "\n%s\n", sc.help.description)
	}
	fmt.Fprintln(w, "\nSubcommands:")
	for _, s := range sc.list {
		fmt.Fprintf(w, "  %-20s %s\n", s.name, s.help.summary)
	}
	if len(sc.help.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, ex := range sc.help.examples {
			fmt.Fprintf(w, "  %s\n", ex)
		}
	}
	fmt.Fprintf(w, "\nRun 'raftkv %s <subcommand> --help' for its flags.\n", sc.group)
}

// run dispatches args to a subcommand; a missing or unknown one is a usage
// error (exit 2).
func (sc *subcommands) run(args []string, stdout, stderr io.Writer) int {
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
