package main

// Every raftkv command parses its arguments with command, a small helper on
// the standard library's flag package. flag is enough: it accepts -name and
// --name alike (so --data-dir and --join in the scripts and docs work as
// they always have) and costs no dependency. What it lacks, command adds:
// flags before, between and after arguments and "--" to end them, one help
// page format for every command (name and summary, usage, description,
// flags, examples) on stdout, usage errors on stderr that name flags as
// users type them, exit code 2 for those, and RAFTKV_<FLAG> from the
// environment for the flags a command allows.
//
// A flag shared by a family of commands is registered in one place: the
// client flags in clientFlags.register (cli_common.go), the chaos flags in
// newChaosCommand. A flag added there reaches every command of the family,
// its help page and, if marked with fromEnv, the environment.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// cmdHelpText is what --help prints for one command.
type cmdHelpText struct {
	usage       string   // e.g. "raftkv put KEY [VALUE] [flags]"
	summary     string   // one line, also listed by 'raftkv --help'
	description string   // one or more sentences
	examples    []string // full command lines
}

// Output formats of -o.
const (
	outputText = "text"
	outputJSON = "json"
)

// envPrefix starts the environment variable of a flag: RAFTKV_<FLAG>, upper
// case, dashes as underscores.
const envPrefix = "RAFTKV_"

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagSection is a titled group of flags on a help page, such as the client
// flags every client command shares.
type flagSection struct {
	title string
	names []string
}

// command holds the parsing state of one command: its flag set, how the
// help page groups the flags, which flags the environment may set, and
// where output goes.
type command struct {
	name   string // "put", "cluster join"
	help   cmdHelpText
	fs     *flag.FlagSet
	stdout io.Writer
	stderr io.Writer

	sections []flagSection
	aliases  map[string]string // alias -> the flag it stands for, e.g. output -> o
	env      map[string]bool   // flags settable as RAFTKV_<FLAG>
	envAll   bool              // every flag is
	checks   []func() error    // run after parsing, in order
	notes    []string          // printed on stderr after a successful parse

	output    string // -o, if the command has it
	hasOutput bool
}

// newCommand creates the flag set of a command; the caller registers its
// flags before parse.
func newCommand(name string, help cmdHelpText, stdout, stderr io.Writer) *command {
	c := &command{name: name, help: help, stdout: stdout, stderr: stderr,
		aliases: map[string]string{}, env: map[string]bool{}}
	c.fs = flag.NewFlagSet("raftkv "+name, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard) // errors and help are printed by parse
	c.fs.Usage = func() {}
	return c
}

// section registers the flags added by register under a titled heading of
// the help page.
func (c *command) section(title string, register func(fs *flag.FlagSet)) {
	before := map[string]bool{}
	c.fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
	register(c.fs)
	s := flagSection{title: title}
	c.fs.VisitAll(func(f *flag.Flag) {
		if !before[f.Name] {
			s.names = append(s.names, f.Name)
		}
	})
	c.sections = append(c.sections, s)
}

// alias makes --alias a second name of flag name: both set the same value
// and the help page prints them on one line.
func (c *command) alias(alias, name string) {
	f := c.fs.Lookup(name)
	c.fs.Var(f.Value, alias, f.Usage)
	c.aliases[alias] = name
}

// fromEnv lets RAFTKV_<FLAG> set each named flag that the command line
// does not.
func (c *command) fromEnv(names ...string) {
	for _, n := range names {
		c.env[n] = true
	}
}

// check adds a validation run after parsing; its error is a usage error.
func (c *command) check(f func() error) { c.checks = append(c.checks, f) }

// setDefault changes a registered flag's default, for a command that needs
// a different one than its family (a longer --timeout for join, say).
func (c *command) setDefault(name, value string) {
	f := c.fs.Lookup(name)
	if err := f.Value.Set(value); err != nil {
		panic(fmt.Sprintf("default %q of --%s: %v", value, name, err))
	}
	f.DefValue = value
}

// outputFlag registers -o text|json (long form --output). A command whose
// old spelling was --json passes deprecatedJSON to keep it working.
func (c *command) outputFlag(deprecatedJSON bool) {
	c.hasOutput = true
	c.fs.StringVar(&c.output, "o", outputText, "output format")
	c.alias("output", "o")
	if deprecatedJSON {
		c.fs.BoolFunc("json", "deprecated: use -o json", func(v string) error {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return err
			}
			if on {
				c.output = outputJSON
			}
			c.notes = append(c.notes, "Note: --json is deprecated; use -o json")
			return nil
		})
	}
	c.check(func() error {
		if c.output != outputText && c.output != outputJSON {
			return fmt.Errorf("-o must be %s or %s, not %q", outputText, outputJSON, c.output)
		}
		return nil
	})
}

// json reports whether -o json was asked for.
func (c *command) json() bool { return c.output == outputJSON }

// parse parses args, allowing flags before, between and after positional
// arguments ("--" ends flag parsing), then fills in flags from the
// environment and runs the checks. ok is false when the command must stop
// and exit with code: after --help (0) or a usage error (2).
func (c *command) parse(args []string) (positional []string, code int, ok bool) {
	for {
		err := c.fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.printHelp(c.stdout)
			return nil, 0, false
		}
		if err != nil {
			return nil, c.usageError("%s", flagError(err)), false
		}
		rest := c.fs.Args()
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
	if err := c.applyEnv(os.LookupEnv); err != nil {
		return nil, c.usageError("%v", err), false
	}
	for _, check := range c.checks {
		if err := check(); err != nil {
			return nil, c.usageError("%v", err), false
		}
	}
	for _, n := range c.notes {
		fmt.Fprintln(c.stderr, n)
	}
	return positional, 0, true
}

// applyEnv sets every flag that may come from the environment and was not
// given on the command line (or through an alias) from RAFTKV_<FLAG>, so the
// command line wins. An empty variable counts as unset.
func (c *command) applyEnv(lookup func(string) (string, bool)) error {
	given := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) {
		given[f.Name] = true
		if name, ok := c.aliases[f.Name]; ok {
			given[name] = true
		}
	})
	var err error
	c.fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] || c.aliases[f.Name] != "" || !(c.envAll || c.env[f.Name]) {
			return
		}
		name := envName(f.Name)
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			if e := c.fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, e)
			}
		}
	})
	return err
}

// flagError rewrites the flag package's messages to name flags the way the
// help page does (--name, not -name).
func flagError(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag " + dashed(name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return "flag " + dashed(name) + " needs a value"
	}
	for _, marker := range []string{" for flag -", " for -"} {
		if i := strings.Index(msg, marker); i >= 0 {
			rest := msg[i+len(marker):]
			name, detail, _ := strings.Cut(rest, ": ")
			return msg[:i] + " for " + dashed(name) + ": " + detail
		}
	}
	return msg
}

// dashed spells a flag name as users type it: -o, --endpoints.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// usageError reports a usage mistake on stderr and returns exit code 2.
func (c *command) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "Error: %s\nUsage: %s\nRun 'raftkv %s --help' for more.\n",
		fmt.Sprintf(format, args...), c.help.usage, c.name)
	return 2
}

// printHelp writes the help page: a name line, usage, description, the
// command's own flags, each shared section, and examples.
func (c *command) printHelp(w io.Writer) {
	fmt.Fprintf(w, "raftkv %s - %s\n\nUsage: %s\n", c.name, c.help.summary, c.help.usage)
	if c.help.description != "" {
		fmt.Fprintf(w, "\n%s\n", c.help.description)
	}
	shared := map[string]bool{}
	for _, s := range c.sections {
		for _, n := range s.names {
			shared[n] = true
		}
	}
	var own []string
	c.fs.VisitAll(func(f *flag.Flag) {
		if !shared[f.Name] {
			own = append(own, f.Name)
		}
	})
	if len(own) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		c.printFlags(w, own)
	}
	for _, s := range c.sections {
		fmt.Fprintf(w, "\n%s:\n", s.title)
		c.printFlags(w, s.names)
	}
	if len(c.help.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, ex := range c.help.examples {
			fmt.Fprintf(w, "  %s\n", ex)
		}
	}
}

// printFlags lists the named flags in the form users type, an alias on the
// line of the flag it stands for.
func (c *command) printFlags(w io.Writer, names []string) {
	aliasOf := map[string][]string{}
	for a, n := range c.aliases {
		aliasOf[n] = append(aliasOf[n], a)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, name := range names {
		if c.aliases[name] != "" {
			continue
		}
		f := c.fs.Lookup(name)
		arg, usage := flag.UnquoteUsage(f)
		spelled := dashed(f.Name)
		for _, a := range aliasOf[f.Name] {
			spelled += ", " + dashed(a)
		}
		if f.Name == "o" && c.hasOutput {
			arg = outputText + "|" + outputJSON
		}
		if isBoolFlag(f) {
			arg = ""
		}
		if arg != "" {
			spelled += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && !isBoolFlag(f) {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		if c.env[f.Name] {
			usage += fmt.Sprintf(" (env %s)", envName(f.Name))
		}
		fmt.Fprintf(tw, "  %s\t%s\n", spelled, usage)
	}
	tw.Flush()
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
