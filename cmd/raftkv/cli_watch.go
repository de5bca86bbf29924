package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"syscall"
	"unicode/utf8"

	"github.com/raftkv/raftkv/client"
)

var watchHelp = cmdHelpText{
	usage:   "raftkv watch [flags] [PREFIX]",
	summary: "follow the changes to keys under a prefix live",
	description: `Follows GET /v1/watch and prints one line per change to a key under
PREFIX (every key without one): the shard, the revision, put or delete, the
key and a put's value. The stream moves to another --endpoints node by
itself when the one serving it goes away, and loses or repeats nothing
(docs/watch.md). --from CURSOR starts after a cursor (the X-Raftkv-Cursor
of a listing, or an event's cursor) instead of now; -o json prints one JSON
object per line, cursor included. Ctrl-C stops it; --duration stops it
after that long. A resume point the node's history no longer holds ends it
with exit status 1 and says so.`,
	examples: []string{
		"raftkv watch app/",
		"raftkv watch -o json --from 1:120,2:95 app/",
	},
}

func cmdWatch(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("watch", watchHelp, stdout, stderr)
	duration := inv.fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	from := inv.fs.String("from", "", "start after this cursor (default: now)")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return inv.usageError("unexpected argument %q", pos[1])
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	var opts []client.WatchOption
	if *from != "" {
		opts = append(opts, client.WatchFrom(*from))
	}
	for e, err := range inv.clientFlags.client().Watch(ctx, prefix, opts...) {
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return 0 // Ctrl-C or --duration
			}
			return inv.fail(err)
		}
		if inv.json() {
			b, _ := json.Marshal(e)
			_, err = fmt.Fprintf(stdout, "%s\n", b)
		} else {
			_, err = fmt.Fprintln(stdout, watchLine(e))
		}
		if err != nil {
			return inv.fail(err)
		}
	}
	return 0
}

// watchLine is a change as one line of text; a value that is not UTF-8
// text is shown quoted.
func watchLine(e client.WatchEvent) string {
	s := fmt.Sprintf("%s %d %-6s %s", e.Shard, e.Revision, e.Type, e.Key)
	if e.Type == "put" {
		v := string(e.Value)
		if !utf8.Valid(e.Value) {
			v = strconv.Quote(v)
		}
		s += " " + v
	}
	return s
}
