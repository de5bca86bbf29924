package main

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/raftkv/raftkv/client"
)

var putHelp = cmdHelpText{
	usage:   "raftkv put KEY [VALUE] [flags]",
	summary: "set a key (value from the argument or stdin)",
	description: `Sets KEY to VALUE. Without VALUE the value is read from stdin, so binary
data and large values work too. Prints the key's new revision, which
--if-match takes. Use -- before a value that starts with a dash.

The write applies at most once: it goes under an idempotency key
(--idempotency-key, or one of the client's own) and is resent only while
its outcome is unknown (after a 504 or a cut connection).`,
	examples: []string{
		"raftkv put greeting hello",
		"raftkv put config/app < app.json",
		"raftkv put lock/leader node1 --if-absent",
		"raftkv put counter 2 --if-match 41",
		"raftkv put orders/42 paid --idempotency-key pay-42",
		"raftkv put services/web 10.0.0.7:80 --lease shard-1.9f2c4e1a7b3d5e60",
	},
}

func cmdPut(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("put", putHelp, stdout, stderr)
	ifMatch := inv.fs.String("if-match", "", "write only if the key's current revision is `REV` (else exit 1, precondition_failed)")
	ifAbsent := inv.fs.Bool("if-absent", false, "create the key only if it does not exist")
	lease := inv.fs.String("lease", "", "attach the key to lease `ID` (raftkv lease grant): it is deleted when the lease ends")
	idemKey := idempotencyKeyFlag(inv)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) < 1 || len(pos) > 2 {
		return inv.usageError("put takes KEY and optionally VALUE, got %d arguments", len(pos))
	}
	var opts []client.WriteOption
	if *ifMatch != "" {
		rev, err := parseRevision(*ifMatch)
		if err != nil {
			return inv.usageError("--if-match: %v", err)
		}
		opts = append(opts, client.IfMatch(rev))
	}
	if *ifAbsent {
		if *ifMatch != "" {
			return inv.usageError("--if-match and --if-absent cannot be combined")
		}
		opts = append(opts, client.IfAbsent())
	}
	if *lease != "" {
		opts = append(opts, client.WithLease(*lease))
	}
	var value []byte
	if len(pos) == 2 {
		value = []byte(pos[1])
	} else {
		if isTerminal(stdin) {
			fmt.Fprintln(stderr, "(reading the value from stdin; end it with Ctrl-D)")
		}
		var err error
		if value, err = io.ReadAll(stdin); err != nil {
			fmt.Fprintf(stderr, "Error: reading value from stdin: %v\n", err)
			return 1
		}
	}
	key := writeKey(*idemKey)
	res, err := inv.client().Put(inv.context(), pos[0], value, withIdempotencyKey(opts, key)...)
	if err != nil {
		return failWrite(inv, err, key)
	}
	if inv.json() {
		_ = printJSON(stdout, res)
		return 0
	}
	fmt.Fprintf(stdout, "OK revision=%d version=%d shard=%s%s\n", res.Revision, res.Version, res.Shard, replayedNote(res.Replayed))
	return 0
}

var getHelp = cmdHelpText{
	usage:   "raftkv get KEY [flags]",
	summary: "print a key's value",
	description: `Prints the value of KEY exactly as stored. The read is linearizable (served
by the shard leader) unless --stale is given. With -o json prints
{"key","value" or "value_base64","revision","version"}. Exits 1 if the key
does not exist.`,
	examples: []string{
		"raftkv get greeting",
		"raftkv get greeting --stale",
		"raftkv get config/app -o json",
	},
}

func cmdGet(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("get", getHelp, stdout, stderr)
	stale := inv.fs.Bool("stale", false, "read the answering node's local copy (fast, may be out of date)")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("get takes exactly one KEY, got %d arguments", len(pos))
	}
	var opts []client.ReadOption
	if *stale {
		opts = append(opts, client.Stale())
	}
	v, err := inv.client().Get(inv.context(), pos[0], opts...)
	if errors.Is(err, client.ErrNotFound) {
		fmt.Fprintf(stderr, "Error: not found: key %q does not exist\n", pos[0])
		return 1
	}
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		item := jsonItem(v.Key, v.Value, v.Revision, v.Version)
		if v.Lease != "" {
			item["lease"] = v.Lease
		}
		_ = printJSON(stdout, item)
		return 0
	}
	stdout.Write(v.Value)
	if isTerminal(stdout) && len(v.Value) > 0 && v.Value[len(v.Value)-1] != '\n' {
		io.WriteString(stdout, "\n")
	}
	return 0
}

var delHelp = cmdHelpText{
	usage:   "raftkv del KEY [flags] | raftkv del --prefix PREFIX [--yes] | raftkv del --all [--yes]",
	summary: "delete a key, or every key under a prefix",
	description: `Deletes KEY. Deleting a key that does not exist is not an error; the output
says whether anything was deleted.

--prefix PREFIX deletes every key that starts with PREFIX, and --all every
key of the cluster. Each shard's part is atomic, but the shards are not one
transaction: a reader may see one shard's keys gone before another's. On a
terminal it first says how many keys that is and asks; --yes skips the
question (scripts, where stdin is not a terminal, are not asked).`,
	examples: []string{
		"raftkv del greeting",
		"raftkv del lock/leader --if-match 17",
		"raftkv del sessions/9 --idempotency-key logout-9",
		"raftkv del --prefix bench/ --yes",
	},
}

// askBeforeDeleting says whether del --prefix asks first: when a person
// can answer. Tests replace it.
var askBeforeDeleting = func() bool { return isTerminal(stdin) }

// delPrefix runs del --prefix / --all.
func delPrefix(inv *invocation, prefix string, all, yes bool) int {
	c := inv.client()
	what := fmt.Sprintf("every key under %q", prefix)
	if all {
		what = "every key of the cluster"
	}
	if !yes && askBeforeDeleting() {
		n, err := c.Count(inv.context(), prefix)
		if err != nil {
			return inv.fail(err)
		}
		fmt.Fprintf(inv.stdout, "Delete %s (%d keys now)? [y/N] ", what, n)
		answer, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(inv.stdout, "nothing deleted")
			return 1
		}
	}
	var n int
	var err error
	if all {
		n, err = c.DeleteAll(inv.context())
	} else {
		n, err = c.DeletePrefix(inv.context(), prefix)
	}
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(inv.stdout, map[string]any{"prefix": prefix, "deleted": n})
	} else {
		fmt.Fprintf(inv.stdout, "deleted %d keys\n", n)
	}
	return 0
}

func cmdDel(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("del", delHelp, stdout, stderr)
	ifMatch := inv.fs.String("if-match", "", "delete only if the key's current revision is `REV`")
	prefix := inv.fs.String("prefix", "", "delete every key that starts with `PREFIX`")
	all := inv.fs.Bool("all", false, "delete every key of the cluster")
	yes := inv.fs.Bool("yes", false, "with --prefix or --all: do not ask first")
	idemKey := idempotencyKeyFlag(inv)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if inv.flagGiven("prefix") || *all {
		switch {
		case len(pos) > 0:
			return inv.usageError("--prefix and --all take no KEY")
		case *ifMatch != "":
			return inv.usageError("--if-match is for one key")
		case *idemKey != "":
			return inv.usageError("--idempotency-key is for one key (a prefix delete can simply be repeated)")
		case *all && inv.flagGiven("prefix"):
			return inv.usageError("give --prefix or --all, not both")
		case !*all && *prefix == "":
			return inv.usageError("an empty --prefix would delete every key: use --all for that")
		}
		return delPrefix(inv, *prefix, *all, *yes)
	}
	if len(pos) != 1 {
		return inv.usageError("del takes exactly one KEY, got %d arguments", len(pos))
	}
	var opts []client.WriteOption
	if *ifMatch != "" {
		rev, err := parseRevision(*ifMatch)
		if err != nil {
			return inv.usageError("--if-match: %v", err)
		}
		opts = append(opts, client.IfMatch(rev))
	}
	key := writeKey(*idemKey)
	deleted, err := inv.client().Delete(inv.context(), pos[0], withIdempotencyKey(opts, key)...)
	if err != nil {
		return failWrite(inv, err, key)
	}
	switch {
	case inv.json():
		_ = printJSON(stdout, map[string]any{"key": pos[0], "deleted": deleted})
	case deleted:
		fmt.Fprintln(stdout, "deleted")
	default:
		fmt.Fprintln(stdout, "not found, nothing deleted")
	}
	return 0
}

var listHelp = cmdHelpText{
	usage:   "raftkv list [PREFIX] [flags]",
	summary: "list keys by prefix",
	description: `Lists keys that start with PREFIX (all keys without one), sorted, one
"key<TAB>value" line each; values that are not printable text are shown
quoted. Without --all one page of at most --limit keys is printed and a note
on stderr says how to continue; --all pages through everything.`,
	examples: []string{
		"raftkv list",
		"raftkv list users/ --limit 10",
		"raftkv list users/ --after users/42",
		"raftkv list --all -o json",
		"raftkv list users/ --keys-only --all",
		"raftkv list users/ --count",
	},
}

func cmdList(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("list", listHelp, stdout, stderr)
	limit := inv.fs.Int("limit", 0, "at most `N` keys per page (default: the server's, 1000)")
	after := inv.fs.String("after", "", "start after this `KEY` (exclusive)")
	all := inv.fs.Bool("all", false, "fetch every page, not just the first")
	keysOnly := inv.fs.Bool("keys-only", false, "print the keys without their values")
	count := inv.fs.Bool("count", false, "print only how many keys there are under PREFIX")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return inv.usageError("list takes at most one PREFIX, got %d arguments", len(pos))
	}
	if *count {
		if *keysOnly || *all || *limit != 0 || *after != "" {
			return inv.usageError("--count counts every key under PREFIX: it takes no --keys-only, --all, --limit or --after")
		}
		prefix := ""
		if len(pos) == 1 {
			prefix = pos[0]
		}
		n, err := inv.client().Count(inv.context(), prefix)
		if err != nil {
			return inv.fail(err)
		}
		if inv.json() {
			_ = printJSON(stdout, map[string]any{"prefix": prefix, "count": n})
		} else {
			fmt.Fprintln(stdout, n)
		}
		return 0
	}
	var readOpts []client.ReadOption
	if *keysOnly {
		readOpts = append(readOpts, client.KeysOnly())
	}
	if *limit < 0 {
		return inv.usageError("--limit must not be negative")
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	c := inv.client()
	var items []client.KV
	more := false
	cursor := *after
	for {
		page, err := c.List(inv.context(), prefix, cursor, *limit, readOpts...)
		if err != nil {
			return inv.fail(err)
		}
		items = append(items, page.Items...)
		more = page.More
		if !*all || !page.More || len(page.Items) == 0 {
			break
		}
		cursor = page.Items[len(page.Items)-1].Key
	}
	if inv.json() {
		out := struct {
			Items []map[string]any `json:"items"`
			More  bool             `json:"more"`
		}{Items: []map[string]any{}, More: more}
		for _, it := range items {
			m := jsonItem(it.Key, it.Value, it.Revision, it.Version)
			if *keysOnly {
				delete(m, "value")
				delete(m, "value_base64")
			}
			out.Items = append(out.Items, m)
		}
		_ = printJSON(stdout, out)
		return 0
	}
	for _, it := range items {
		if *keysOnly {
			fmt.Fprintln(stdout, it.Key)
			continue
		}
		fmt.Fprintf(stdout, "%s\t%s\n", it.Key, displayValue(it.Value))
	}
	if more && len(items) > 0 {
		fmt.Fprintf(stderr, "(more keys: continue with --after %q, or use --all)\n", items[len(items)-1].Key)
	}
	return 0
}

// jsonItem renders a key and value the way the server's list does: value
// as a string when it is UTF-8, value_base64 otherwise.
func jsonItem(key string, value []byte, rev, ver uint64) map[string]any {
	m := map[string]any{"key": key, "revision": rev, "version": ver}
	if utf8.Valid(value) {
		m["value"] = string(value)
	} else {
		m["value_base64"] = base64.StdEncoding.EncodeToString(value)
	}
	return m
}

// displayValue shows printable single-line text as is and quotes anything
// else, so each item stays on one line.
func displayValue(v []byte) string {
	s := string(v)
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// parseRevision accepts 42, "42" and W/"42" (so an ETag can be pasted).
func parseRevision(s string) (uint64, error) {
	t := strings.Trim(strings.TrimPrefix(strings.TrimSpace(s), "W/"), `"`)
	rev, err := strconv.ParseUint(t, 10, 64)
	if err != nil || rev == 0 {
		return 0, fmt.Errorf("%q is not a revision (a positive integer)", s)
	}
	return rev, nil
}
