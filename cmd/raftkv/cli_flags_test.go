package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// leafCommand is a command that parses flags: "put", "cluster join".
type leafCommand struct {
	name string
	help *cmdHelpText
}

// leafCommands lists every command that parses flags, walking the dispatch
// table and the subcommand groups, so a new command is covered by the tests
// below without being added to them.
func leafCommands() []leafCommand {
	groups := map[string]*subcommands{
		"cluster": &clusterCommands, "chaos": &chaosCommands, "snapshot": &snapshotCommands,
		"certs": &certsCommands, "auth": &authCommands, "lease": &leaseCommands,
	}
	var out []leafCommand
	for _, c := range commands {
		if c.name == "help" {
			continue
		}
		g, ok := groups[c.name]
		if !ok {
			out = append(out, leafCommand{c.name, c.help})
			continue
		}
		for _, s := range g.list {
			out = append(out, leafCommand{c.name + " " + s.name, s.help})
		}
	}
	return out
}

// clientCommands are the commands that talk to a running cluster.
var clientCommands = []string{
	"put", "get", "del", "list", "txn", "bench",
	"cluster status", "cluster join", "cluster leave", "cluster transfer-leadership",
	"snapshot save",
}

func TestEveryCommandHasOneHelpFormat(t *testing.T) {
	for _, c := range leafCommands() {
		args := append(strings.Fields(c.name), "--help")
		code, out, errOut := runCLI(t, args...)
		head := "raftkv " + c.name + " - " + c.help.summary + "\n\nUsage: " + c.help.usage + "\n"
		if code != 0 || errOut != "" || !strings.HasPrefix(out, head) {
			t.Errorf("raftkv %s --help: code %d, stderr %q, stdout:\n%s\nwant it to start with:\n%s", c.name, code, errOut, out, head)
		}
		if c.name != "version" && !strings.Contains(out, "Flags:\n") && !strings.Contains(out, "flags:\n") {
			t.Errorf("raftkv %s --help lists no flags:\n%s", c.name, out)
		}
		if c.name != "version" && !strings.Contains(out, "\nExamples:\n") {
			t.Errorf("raftkv %s --help has no examples:\n%s", c.name, out)
		}
		_, viaHelp, _ := runCLI(t, append([]string{"help"}, strings.Fields(c.name)...)...)
		if viaHelp != out {
			t.Errorf("raftkv help %s differs from raftkv %s --help", c.name, c.name)
		}
	}
}

func TestMainHelpListsEveryCommand(t *testing.T) {
	_, out, _ := runCLI(t, "--help")
	for _, c := range commands {
		if !strings.Contains(out, "\n  "+c.name+" ") || !strings.Contains(out, c.help.summary) {
			t.Errorf("raftkv --help does not list %s (%s):\n%s", c.name, c.help.summary, out)
		}
	}
	for _, group := range []*subcommands{&clusterCommands, &chaosCommands, &snapshotCommands, &certsCommands, &authCommands, &leaseCommands} {
		code, out, errOut := runCLI(t, group.group, "--help")
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "raftkv "+group.group+" - "+group.help.summary+"\n") {
			t.Errorf("raftkv %s --help: code %d, stderr %q, stdout:\n%s", group.group, code, errOut, out)
		}
	}
}

func TestEveryCommandRejectsAnUnknownFlag(t *testing.T) {
	for _, c := range leafCommands() {
		args := append(strings.Fields(c.name), "--no-such-flag")
		code, out, errOut := runCLI(t, args...)
		want := "Error: unknown flag --no-such-flag\nUsage: " + c.help.usage + "\nRun 'raftkv " + c.name + " --help' for more.\n"
		if code != 2 || out != "" || errOut != want {
			t.Errorf("raftkv %s --no-such-flag: code %d, stdout %q, stderr %q, want code 2 and %q", c.name, code, out, errOut, want)
		}
	}
}

func TestEveryOutputFlagIsSpelledTheSame(t *testing.T) {
	for _, c := range leafCommands() {
		_, help, _ := runCLI(t, append(strings.Fields(c.name), "--help")...)
		if !strings.Contains(help, "-o, --output text|json") {
			continue
		}
		for _, flag := range []string{"-o", "--output"} {
			code, out, errOut := runCLI(t, append(strings.Fields(c.name), flag, "yaml")...)
			if code != 2 || out != "" || !strings.HasPrefix(errOut, `Error: -o must be text or json, not "yaml"`) {
				t.Errorf("raftkv %s %s yaml: code %d, stdout %q, stderr %q", c.name, flag, code, out, errOut)
			}
		}
	}
	for _, name := range clientCommands {
		_, help, _ := runCLI(t, append(strings.Fields(name), "--help")...)
		if !strings.Contains(help, "-o, --output text|json") {
			t.Errorf("raftkv %s has no -o:\n%s", name, help)
		}
	}
}

func TestEveryClientCommandHasTheClientFlags(t *testing.T) {
	// The client flags as registered in their one place.
	var cf clientFlags
	probe := newCommand("probe", cmdHelpText{}, io.Discard, io.Discard)
	cf.register(probe)
	var want bytes.Buffer
	probe.printFlags(&want, probe.sections[0].names)

	for _, name := range clientCommands {
		_, help, _ := runCLI(t, append(strings.Fields(name), "--help")...)
		section := "\n" + clientFlagsTitle + ":\n" + want.String()
		if name == "cluster join" || name == "cluster leave" || name == "snapshot save" {
			// These wait longer by default; only the default differs.
			section = "\n" + clientFlagsTitle + ":\n"
		}
		if !strings.Contains(help, section) {
			t.Errorf("raftkv %s --help lacks the client flags:\n%s\nwant:\n%s", name, help, section)
		}
	}
	if _, top, _ := runCLI(t, "--help"); !strings.Contains(top, want.String()) {
		t.Errorf("raftkv --help lacks the client flags:\n%s\nwant:\n%s", top, want.String())
	}
}

func TestLongerDefaultTimeouts(t *testing.T) {
	for name, want := range map[string]string{
		"cluster join": "(default 1m0s)", "cluster leave": "(default 1m0s)", "snapshot save": "(default 2m0s)",
	} {
		_, help, _ := runCLI(t, append(strings.Fields(name), "--help")...)
		if !strings.Contains(help, "--timeout duration      deadline for the whole command "+want) {
			t.Errorf("raftkv %s --help: timeout default is not %s:\n%s", name, want, help)
		}
	}
}

func TestBadFlagValuesNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "k", "--timeout", "soon"}, `Error: invalid value "soon" for --timeout: parse error`},
		{[]string{"get", "k", "--timeout"}, "Error: flag --timeout needs a value"},
		{[]string{"get", "k", "--stale=maybe"}, `Error: invalid boolean value "maybe" for --stale`},
		{[]string{"serve", "--shards", "many"}, `Error: invalid value "many" for --shards: parse error`},
		{[]string{"serve", "extra"}, `Error: unexpected argument "extra"`},
		{[]string{"chaos", "run", "--nodes", "three"}, `Error: invalid value "three" for --nodes: parse error`},
		{[]string{"chaos", "steady", "--json=3"}, `Error: invalid boolean value "3" for --json`},
		{[]string{"snapshot", "inspect", "--endpoints", "x", "b.tar"}, "Error: unknown flag --endpoints"},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, tc.want) {
			t.Errorf("raftkv %s: code %d, stdout %q, stderr %q, want code 2 and %q", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}
}

func TestServeFlagsAndEnvironment(t *testing.T) {
	t.Setenv("RAFTKV_HTTP_ADDR", "127.0.0.1:18081")
	t.Setenv("RAFTKV_JOIN", "http://127.0.0.1:18080, 127.0.0.1:18082")
	t.Setenv("RAFTKV_PPROF", "true")
	t.Setenv("RAFTKV_ID", "") // empty counts as unset
	var stderr bytes.Buffer
	sf, code, ok := parseServeFlags([]string{"--data-dir", t.TempDir(), "--raft-addr=127.0.0.1:17001", "-shards", "2"}, io.Discard, &stderr)
	if !ok {
		t.Fatalf("parse: code %d, %s", code, stderr.String())
	}
	c := sf.cfg
	if c.NodeID != "node1" || c.HTTPAddr != "127.0.0.1:18081" || c.RaftAddr != "127.0.0.1:17001" || c.Shards != 2 || !sf.pprof {
		t.Fatalf("config from flags and environment: %+v, pprof %v", c, sf.pprof)
	}
	if strings.Join(c.Join, ",") != "127.0.0.1:18080,127.0.0.1:18082" {
		t.Fatalf("join from RAFTKV_JOIN: %q", c.Join)
	}

	// A flag on the command line wins over the environment.
	sf, _, ok = parseServeFlags([]string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:18090"}, io.Discard, io.Discard)
	if !ok || sf.cfg.HTTPAddr != "127.0.0.1:18090" {
		t.Fatalf("--http-addr did not win over RAFTKV_HTTP_ADDR: %+v", sf)
	}

	t.Setenv("RAFTKV_SHARDS", "lots")
	stderr.Reset()
	if _, code, ok := parseServeFlags(nil, io.Discard, &stderr); ok || code != 2 || !strings.HasPrefix(stderr.String(), `Error: RAFTKV_SHARDS="lots": `) {
		t.Fatalf("bad RAFTKV_SHARDS: ok %v, code %d, stderr %q", ok, code, stderr.String())
	}
}

func TestClientFlagsComeOnlyFromTheirOwnVariables(t *testing.T) {
	// RAFTKV_ID configures serve; it must not fill in cluster join's --id.
	t.Setenv("RAFTKV_ID", "node9")
	code, _, errOut := runCLI(t, "cluster", "join", "--raft-addr", "127.0.0.1:7003", "--http-addr", "127.0.0.1:8083")
	if code != 2 || !strings.Contains(errOut, "--id, --raft-addr and --http-addr are required") {
		t.Fatalf("cluster join without --id: code %d, stderr %q", code, errOut)
	}
}

func TestChaosKeepsDeprecatedJSONFlag(t *testing.T) {
	var stderr bytes.Buffer
	f := newChaosCommand("steady", chaosSteadyHelp, io.Discard, &stderr)
	if code, ok := f.parse([]string{"--json", "--bin", "/bin/true"}); !ok {
		t.Fatalf("--json: code %d, stderr %q", code, stderr.String())
	}
	if !f.json() || !strings.Contains(stderr.String(), "--json is deprecated; use -o json") {
		t.Fatalf("--json: json %v, stderr %q", f.json(), stderr.String())
	}

	stderr.Reset()
	f = newChaosCommand("steady", chaosSteadyHelp, io.Discard, &stderr)
	if _, ok := f.parse([]string{"-o", "json", "--bin", "/bin/true"}); !ok || !f.json() || stderr.Len() != 0 {
		t.Fatalf("-o json: ok %v, json %v, stderr %q", ok, f.json(), stderr.String())
	}
}
