package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// leaseCommands are the subcommands of "raftkv lease" (docs/leases.md).
var leaseCommands = subcommands{
	group: "lease",
	help:  cmdHelpText{summary: "grant, keep alive, revoke and show leases (keys that expire together)"},
	list: []commandEntry{
		{"grant", &leaseGrantHelp, cmdLeaseGrant},
		{"keepalive", &leaseKeepAliveHelp, cmdLeaseKeepAlive},
		{"revoke", &leaseRevokeHelp, cmdLeaseRevoke},
		{"show", &leaseShowHelp, cmdLeaseShow},
		{"list", &leaseListHelp, cmdLeaseList},
	},
}

func cmdLease(args []string, stdout, stderr io.Writer) int {
	return leaseCommands.run(args, stdout, stderr)
}

var leaseGrantHelp = cmdHelpText{
	usage:   "raftkv lease grant TTL [flags]",
	summary: "create a lease and print its id",
	description: `Creates a lease with the time to live TTL (a duration from 5s to 24h) and
prints its id. Attach keys with raftkv put KEY VALUE --lease ID; they are
deleted together when the lease expires (no keepalive for TTL) or is
revoked.`,
	examples: []string{"raftkv lease grant 30s", "raftkv lease grant 1h -o json"},
}

func cmdLeaseGrant(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("lease grant", leaseGrantHelp, stdout, stderr)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one TTL, such as 30s")
	}
	ttl, err := time.ParseDuration(pos[0])
	if err != nil {
		return inv.usageError("TTL %q: want a duration such as 30s", pos[0])
	}
	l, err := inv.client().Grant(inv.context(), ttl)
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, map[string]any{"id": l.ID, "ttl": l.TTL.String()})
		return 0
	}
	fmt.Fprintln(stdout, l.ID)
	return 0
}

var leaseKeepAliveHelp = cmdHelpText{
	usage:   "raftkv lease keepalive ID [--keep] [flags]",
	summary: "restart a lease's countdown",
	description: `Restarts the countdown of lease ID to its full time to live. With --keep it
goes on doing so (every third of the TTL) until interrupted, and exits 1
if the lease is lost (expired, revoked, or no keepalive got through for a
whole TTL). Exits 1 if the lease does not exist or has expired.`,
	examples: []string{"raftkv lease keepalive shard-1.9f2c4e1a7b3d5e60", "raftkv lease keepalive shard-1.9f2c4e1a7b3d5e60 --keep"},
}

func cmdLeaseKeepAlive(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("lease keepalive", leaseKeepAliveHelp, stdout, stderr)
	keep := inv.fs.Bool("keep", false, "keep the lease alive until interrupted")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one lease ID")
	}
	if !*keep {
		l, err := inv.client().KeepAlive(inv.context(), pos[0])
		if err != nil {
			return inv.fail(err)
		}
		if inv.json() {
			_ = printJSON(stdout, map[string]any{"id": l.ID, "ttl": l.TTL.String()})
			return 0
		}
		fmt.Fprintf(stdout, "OK ttl=%v\n", l.TTL)
		return 0
	}
	ctx, stop := signalContext()
	defer stop()
	k, err := inv.client().KeepLeaseAlive(ctx, pos[0])
	if err != nil {
		return inv.fail(err)
	}
	fmt.Fprintf(stderr, "keeping lease %s alive; interrupt to stop\n", pos[0])
	<-k.Done()
	if err := k.Err(); err != nil {
		return inv.fail(err)
	}
	return 0
}

var leaseRevokeHelp = cmdHelpText{
	usage:   "raftkv lease revoke ID [flags]",
	summary: "end a lease now and delete its keys",
	description: `Revokes lease ID: every key attached to it is deleted, on every shard at
once. Prints how many keys were deleted. Exits 1 if the lease does not
exist (any more).`,
	examples: []string{"raftkv lease revoke shard-1.9f2c4e1a7b3d5e60"},
}

func cmdLeaseRevoke(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("lease revoke", leaseRevokeHelp, stdout, stderr)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one lease ID")
	}
	n, err := inv.client().Revoke(inv.context(), pos[0])
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, map[string]any{"revoked": true, "deleted": n})
		return 0
	}
	fmt.Fprintf(stdout, "OK deleted=%d\n", n)
	return 0
}

var leaseShowHelp = cmdHelpText{
	usage:   "raftkv lease show ID [flags]",
	summary: "print a lease's time to live, time left and keys",
	description: `Prints lease ID's time to live, the time left before it expires unless kept
alive (by the clock of its home shard's leader), and its keys. Exits 1 if
the lease does not exist or has expired.`,
	examples: []string{"raftkv lease show shard-1.9f2c4e1a7b3d5e60", "raftkv lease show shard-1.9f2c4e1a7b3d5e60 -o json"},
}

func cmdLeaseShow(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("lease show", leaseShowHelp, stdout, stderr)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one lease ID")
	}
	l, err := inv.client().LeaseInfo(inv.context(), pos[0])
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, map[string]any{"id": l.ID, "ttl": l.TTL.String(), "remaining": l.Remaining.String(), "keys": l.Keys})
		return 0
	}
	fmt.Fprintf(stdout, "id=%s ttl=%v remaining=%v keys=%d\n", l.ID, l.TTL, l.Remaining, len(l.Keys))
	if len(l.Keys) > 0 {
		fmt.Fprintln(stdout, strings.Join(l.Keys, "\n"))
	}
	return 0
}

var leaseListHelp = cmdHelpText{
	usage:   "raftkv lease list [flags]",
	summary: "list every live lease",
	description: `Lists every live lease with its time to live and time left (raftkv lease show
lists a lease's keys).`,
	examples: []string{"raftkv lease list", "raftkv lease list -o json"},
}

func cmdLeaseList(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("lease list", leaseListHelp, stdout, stderr)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return inv.usageError("lease list takes no arguments")
	}
	list, err := inv.client().Leases(inv.context())
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		out := make([]map[string]any, 0, len(list))
		for _, l := range list {
			out = append(out, map[string]any{"id": l.ID, "ttl": l.TTL.String(), "remaining": l.Remaining.String()})
		}
		_ = printJSON(stdout, map[string]any{"leases": out})
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTTL\tREMAINING")
	for _, l := range list {
		fmt.Fprintf(tw, "%s\t%v\t%v\n", l.ID, l.TTL, l.Remaining.Round(time.Millisecond))
	}
	tw.Flush()
	return 0
}
