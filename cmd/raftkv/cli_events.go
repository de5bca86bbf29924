package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/client"
)

var eventsHelp = cmdHelpText{
	usage:   "raftkv events [flags]",
	summary: "follow a node's raft events live (leader changes, elections, checkpoints…)",
	description: `Follows GET /v1/events of the first --endpoints node and prints each event
as it happens: leader changes, this node's raft state changes, elections
with their cause, peers added and removed, followers whose heartbeats fail
or resume, checkpoints written or loaded, and transactions finished by
recovery. A node reports what its own groups do: run one per node to watch
a failover from every side. -o json prints one JSON object per line.
Ctrl-C stops it; --duration stops it after that long.`,
	examples: []string{
		"raftkv events --endpoints 127.0.0.1:8081",
		"raftkv events -o json --duration 30s | jq -c 'select(.type==\"leader\")'",
	},
}

func cmdEvents(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("events", eventsHelp, stdout, stderr)
	duration := inv.fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return inv.usageError("unexpected argument %q", pos[0])
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	c := inv.clientFlags.client()
	err := c.At(c.Endpoints()[0]).Events(ctx, func(e client.Event) error {
		if inv.json() {
			b, _ := json.Marshal(e)
			_, err := fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintln(stdout, eventLine(e))
		return err
	})
	if err != nil {
		return inv.fail(err)
	}
	return 0
}

// eventLine is an event as one line of text.
func eventLine(e client.Event) string {
	s := fmt.Sprintf("%s %s %-8s %s", e.At.Local().Format("15:04:05.000"), e.Node, e.Group, e.Type)
	switch e.Type {
	case "leader":
		s += fmt.Sprintf(" %s term %d", orDash(e.Leader), e.Term)
	case "state":
		s += fmt.Sprintf(" %s term %d", e.State, e.Term)
	case "election":
		s += fmt.Sprintf(" %s (%s) term %d", e.Event, e.Cause, e.Term)
	case "peer_added", "peer_removed", "heartbeat_failed", "heartbeat_resumed":
		s += " " + e.Peer
	case "checkpoint":
		s += fmt.Sprintf(" index %d, %d bytes, %v", e.Index, e.Bytes, time.Duration(e.Ms)*time.Millisecond)
	case "checkpoint_loaded":
		s += fmt.Sprintf(" index %d", e.Index)
	case "txn_recovered":
		s += fmt.Sprintf(" %s %s (%s)", e.Txn, e.Outcome, e.Cause)
		if e.Error != "" {
			s += ": " + e.Error
		}
	}
	return s
}
