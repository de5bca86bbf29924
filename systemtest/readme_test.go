package systemtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The README test pastes README.md's shell blocks, in order, into one bash
// shell, as a new user following it from the top would, and checks each
// command's exit code and the outputs a reader relies on. So the README
// cannot go stale: change a command there and this test runs the new one.
//
// The README uses fixed ports (8080, 7000, ...) and writes into the folder
// it runs in. So the shell runs in a copy of the repository's tracked files,
// inside fresh network, pid and mount namespaces (unshare): its 127.0.0.1
// is its own, nothing it starts can outlive it (the kernel kills every
// process in a pid namespace when its first process dies), and the checkout
// the test runs from stays clean.

// readmeCommand is one command of a README shell block (continuation lines
// joined), with the block it came from.
type readmeCommand struct {
	block int
	text  string
}

// notRun, on the line before a block, keeps the docs test from running it
// (a stream that never ends, a step that needs a process the document does
// not start); the rest of the comment says why.
const notRun = "<!-- not run by the docs test"

// readmeCommands extracts the commands of every ```sh block of a markdown
// file, in order, skipping blank and comment-only lines and the blocks
// marked notRun.
func readmeCommands(markdown string) []readmeCommand {
	var cmds []readmeCommand
	block, inBlock, skip, pending, previous := 0, false, false, "", ""
	for _, line := range strings.Split(markdown, "\n") {
		trimmed := strings.TrimSpace(line)
		before := previous
		previous = trimmed
		switch {
		case !inBlock && trimmed == "```sh":
			inBlock = true
			skip = strings.HasPrefix(before, notRun)
			block++
			continue
		case inBlock && skip:
			inBlock = trimmed != "```"
			continue
		case inBlock && trimmed == "```":
			inBlock = false
			continue
		case !inBlock, pending == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")):
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			pending += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		if openQuote(pending + trimmed) {
			pending += trimmed + "\n" // a quoted argument goes on
			continue
		}
		cmds = append(cmds, readmeCommand{block: block, text: pending + trimmed})
		pending = ""
	}
	return cmds
}

// openQuote reports whether a shell command line ends inside a quoted
// string, so that the next line belongs to it.
func openQuote(line string) bool {
	var quote rune
	for _, r := range line {
		switch {
		case quote == 0 && (r == '\'' || r == '"'):
			quote = r
		case quote == 0 && r == '#':
			return false // a comment: quotes in it do not count
		case r == quote:
			quote = 0
		}
	}
	return quote != 0
}

// readmeCheck is what the test expects of one README command's output.
type readmeCheck struct {
	prefix string         // the command starts with this
	want   *regexp.Regexp // its output matches this
}

// readmeChecks are the outputs a reader of the README relies on. Every
// check must match a command of the README: a check left behind by an edit
// fails the test rather than passing unnoticed.
var readmeChecks = []readmeCheck{
	{"curl http://127.0.0.1:8080/v1/kv/greeting", regexp.MustCompile(`^hello$`)},
	{`echo "$etag"`, regexp.MustCompile(`^"[0-9]+"$`)},
	{"curl http://127.0.0.1:8082/v1/kv/accounts/alice", regexp.MustCompile(`^100$`)},
	{"curl 'http://127.0.0.1:8080/v1/kv/accounts/alice?consistency=stale'", regexp.MustCompile(`^100$`)},
	{`curl -X PUT -H "If-Match: $etag" --data-binary '90'`, regexp.MustCompile(`"revision":[0-9]+`)},
	{`curl -X PUT -H "If-Match: $etag" --data-binary '80'`, regexp.MustCompile(`"code":"precondition_failed"`)},
	{"curl -X PUT -H 'If-None-Match: *'", regexp.MustCompile(`"key":"once"`)},
	{"curl 'http://127.0.0.1:8080/v1/kv?prefix=accounts/&limit=10'", regexp.MustCompile(`"key":"accounts/alice"`)},
	{"./raftkv get accounts/bob", regexp.MustCompile(`^50$`)},
	{"./raftkv list accounts/\x00", regexp.MustCompile(`(?s)accounts/alice.*accounts/bob`)},
	{"./raftkv cluster status", regexp.MustCompile(`shard-1`)},
	{"curl -s http://127.0.0.1:8080/v1/cluster | grep", regexp.MustCompile(`"name":"shard-1".*"leader":"node[1-3]"`)},
	{"curl -X PUT --data-binary 'still here'", regexp.MustCompile(`"key":"after-kill"`)},
	{"./raftkv events", regexp.MustCompile(`\S`)},
	{"./raftkv list accounts/ --count", regexp.MustCompile(`^2$`)},
	{"./raftkv del --prefix accounts/", regexp.MustCompile(`\b2\b`)},
	{"./raftkv bench --endpoints", regexp.MustCompile(`\b[1-9][0-9]* ok, `)},
	{"./raftkv bench --op get", regexp.MustCompile(`\b[1-9][0-9]* ok, `)},
	{"./raftkv snapshot inspect tmp/backup.tar", regexp.MustCompile(`shard-1`)},
	{"curl --retry 20 --retry-connrefused --retry-delay 1 http://127.0.0.1:8100/v1/kv/after-kill", regexp.MustCompile(`^still here$`)},
}

// apiDocChecks are the same for the examples of docs/api.md.
var apiDocChecks = []readmeCheck{
	{"curl -X PUT --data-binary 'hello' http://127.0.0.1:8080/v1/kv/greeting", regexp.MustCompile(`"key":"greeting"`)},
	{`curl -X PUT -H "If-Match: $etag" --data-binary 'hi'`, regexp.MustCompile(`"revision":[0-9]+`)},
	{"curl -X PUT -H 'If-None-Match: *' --data-binary 'first'", regexp.MustCompile(`"key":"lock"`)},
	{`curl "http://127.0.0.1:8082/v1/kv/greeting?consistency=stale&min_index=$idx"`, regexp.MustCompile(`^v2$`)},
	{"curl -X DELETE http://127.0.0.1:8080/v1/kv/greeting", regexp.MustCompile(`"deleted":true`)},
	{`curl -X DELETE -H "If-Match: $etag" http://127.0.0.1:8080/v1/kv/lock`, regexp.MustCompile(`"deleted":true`)},
	{"curl 'http://127.0.0.1:8080/v1/kv?prefix=users/&limit=100'\x00", regexp.MustCompile(`"key":"users/1","value":"ann"`)},
	{"curl 'http://127.0.0.1:8080/v1/kv?prefix=users/&count_only=true'", regexp.MustCompile(`^\{"count":1\}$`)},
	{"curl -X POST http://127.0.0.1:8080/v1/cluster/snapshot", regexp.MustCompile(`"taken":`)},
	{`curl -X POST -d '{"id":"node3"}' http://127.0.0.1:8080/v1/cluster/leave`, regexp.MustCompile(`"left":true`)},
	{`curl -X POST -d '{"group":"shard-2","to":"node2"}'`, regexp.MustCompile(`"leader":"node2"`)},
}

// checkFor returns the check of a command, if it has one; "\x00" at the end
// of a prefix means the command is exactly that.
func checkFor(checks []readmeCheck, cmd string) (readmeCheck, int, bool) {
	for i, c := range checks {
		if exact, ok := strings.CutSuffix(c.prefix, "\x00"); ok {
			if cmd == exact {
				return c, i, true
			}
		} else if strings.HasPrefix(cmd, c.prefix) {
			return c, i, true
		}
	}
	return readmeCheck{}, 0, false
}

func TestREADMERunsAsWritten(t *testing.T) {
	runDocument(t, "README.md", nil, readmeChecks)
}

// TestAPIDocExamplesRunAsWritten runs docs/api.md's examples, in order,
// against the README's three-node cluster.
func TestAPIDocExamplesRunAsWritten(t *testing.T) {
	runDocument(t, filepath.Join("docs", "api.md"), []string{"scripts/cluster.sh up 3"}, apiDocChecks)
}

// runDocument runs the shell blocks of the markdown file at path (relative
// to the repository root) after the setup commands, and applies checks.
func runDocument(t *testing.T, path string, setup []string, checks []readmeCheck) {
	skipShort(t)
	for _, tool := range []string{"unshare", "ip", "curl", "bash", "go", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("running %s needs %s: %v", path, tool, err)
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", path))
	if err != nil {
		t.Fatal(err)
	}
	cmds := readmeCommands(string(doc))
	checked := map[int]bool{}
	for _, c := range cmds {
		if _, i, ok := checkFor(checks, c.text); ok {
			checked[i] = true
		}
	}
	for i, c := range checks {
		if !checked[i] {
			t.Errorf("%s has no command starting %q any more; update the test's checks", path, strings.TrimSuffix(c.prefix, "\x00"))
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	repo := copyTrackedFiles(t)
	sh := startNamespacedShell(t, repo)
	for _, cmd := range setup {
		t.Logf("  (setup) $ %s", cmd)
		sh.run(t, cmd, 3*time.Minute)
	}
	var quickStart string // pid of the quick-start node, while it runs
	lastBlock := 0
	for _, c := range cmds {
		if c.block != lastBlock {
			t.Logf("%s block %d", path, c.block)
			lastBlock = c.block
		}
		cmd := c.text
		switch {
		case strings.HasPrefix(cmd, "go test"):
			// The README's test command is what runs this test.
			t.Logf("  (not run here: %s)", cmd)
			continue
		case cmd == "go run ./cmd/raftkv serve" || strings.HasPrefix(cmd, "go run ./cmd/raftkv serve "):
			// The reader leaves this running in its own terminal and goes on
			// in another one: start it in the background and wait until the
			// node is ready, as the reader would before the next step.
			// (The braces keep a trailing comment from eating the redirection.)
			out := sh.run(t, "{ "+cmd+"\n} >quickstart.log 2>&1 & echo $!", time.Minute)
			quickStart = strings.TrimSpace(out)
			sh.run(t, "for i in $(seq 600); do curl -sf http://127.0.0.1:8080/readyz >/dev/null && break; sleep 0.1; done; curl -sf http://127.0.0.1:8080/readyz || cat quickstart.log", 3*time.Minute)
			continue
		case strings.HasPrefix(cmd, "scripts/cluster.sh up") && quickStart != "":
			// "Stop the quick-start node first (Ctrl-C)": go run and the
			// node it started share a process group (set -m), which is what
			// a terminal's Ctrl-C signals.
			sh.run(t, "kill -INT -- -"+quickStart+"; wait "+quickStart+"; true", time.Minute)
			quickStart = ""
		}
		t.Logf("  $ %s", cmd)
		out, errOut, code := sh.runStatus(t, cmd, 3*time.Minute)
		if code != 0 {
			t.Fatalf("%s block %d: %q exited %d:\n%s\nstderr:\n%s", path, c.block, cmd, code, out, errOut)
		}
		if check, _, ok := checkFor(checks, cmd); ok && !check.want.MatchString(strings.TrimSpace(out)) {
			t.Fatalf("%s block %d: %q printed\n%s\nstderr:\n%s\nwant stdout to match %s", path, c.block, cmd, out, errOut, check.want)
		}
	}
}

// copyTrackedFiles copies the repository's tracked files (as they are on
// disk) into a temp dir and returns it.
func copyTrackedFiles(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ls := exec.Command("git", "ls-files", "-z")
	ls.Dir = root
	list, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, name := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		src := filepath.Join(root, name)
		info, err := os.Lstat(src)
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if !info.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// namespacedShell is one bash process in namespaces of its own, fed one
// command at a time.
type namespacedShell struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout chan string // lines
	stderr chan string
	seq    int
}

// startNamespacedShell starts bash in new network, pid and mount namespaces
// (as root, or mapped to root in a user namespace otherwise), with loopback
// up and dir as its working directory. Cleanup kills it, and with it every
// process it started.
func startNamespacedShell(t *testing.T, dir string) *namespacedShell {
	t.Helper()
	args := []string{"--net", "--pid", "--fork", "--mount-proc", "--kill-child"}
	if os.Geteuid() != 0 {
		args = append(args, "--map-root-user")
	}
	args = append(args, "bash", "--noprofile", "--norc")
	cmd := exec.Command("unshare", args...)
	cmd.Dir = dir
	// The module cache already holds every dependency; in the namespace
	// there is no network to fetch one with anyway.
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly", "GOTOOLCHAIN=local",
		"RAFTKV_ENDPOINTS=", "RAFTKV_TOKEN=")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	sh := &namespacedShell{cmd: cmd, stdin: stdin}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	sh.stdout, sh.stderr = lines(stdout), lines(stderr)
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // --kill-child: bash dies, and the pid namespace with it
		_ = cmd.Wait()
	})
	sh.run(t, "set -m; ip link set lo up", 30*time.Second)
	return sh
}

// lines delivers the lines read from r until it ends.
func lines(r io.Reader) chan string {
	ch := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	return ch
}

// runStatus runs one command line in the shell and returns what it printed
// on stdout, on stderr, and its exit code. It fails the test if the command
// has not finished by the timeout.
func (sh *namespacedShell) runStatus(t *testing.T, command string, timeout time.Duration) (stdout, stderr string, code int) {
	t.Helper()
	sh.seq++
	marker := fmt.Sprintf("@@readme-test-%d@@", sh.seq)
	// The newline after the command ends any comment on its line.
	if _, err := fmt.Fprintf(sh.stdin, "%s\nprintf '\\n%s %%d\\n' $?; printf '\\n%s\\n' >&2\n", command, marker, marker); err != nil {
		t.Fatalf("writing to the shell: %v", err)
	}
	deadline := time.After(timeout)
	read := func(ch chan string, withCode bool) string {
		var out strings.Builder
		for {
			select {
			case line, ok := <-ch:
				if !ok {
					t.Fatalf("the shell exited during %q:\n%s", command, out.String())
				}
				if rest, found := strings.CutPrefix(line, marker); found {
					if withCode {
						fmt.Sscan(rest, &code)
					}
					return strings.TrimSuffix(out.String(), "\n")
				}
				out.WriteString(line + "\n")
			case <-deadline:
				t.Fatalf("%q did not finish within %s:\n%s", command, timeout, out.String())
			}
		}
	}
	stdout = read(sh.stdout, true)
	stderr = read(sh.stderr, false)
	return stdout, stderr, code
}

// run is runStatus for a command that must succeed; it returns its stdout.
func (sh *namespacedShell) run(t *testing.T, command string, timeout time.Duration) string {
	t.Helper()
	out, errOut, code := sh.runStatus(t, command, timeout)
	if code != 0 {
		t.Fatalf("%q exited %d:\n%s\n%s", command, code, out, errOut)
	}
	return out
}
