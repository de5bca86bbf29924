package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/raftkv/raftkv/client"
)

// probeTimeout bounds the /livez probe of each node in cluster status.
const probeTimeout = time.Second

// membershipTimeout is the default --timeout of join and leave: the server
// answers only once the node has caught up (join) or been removed from
// every group (leave), which can take longer than a key operation.
const membershipTimeout = 60 * time.Second

// clusterCommands are the subcommands of "raftkv cluster".
var clusterCommands = subcommands{
	group: "cluster",
	help:  cmdHelpText{summary: "cluster status, join, leave, transfer-leadership"},
	list: []commandEntry{
		{"status", &clusterStatusHelp, cmdClusterStatus},
		{"join", &clusterJoinHelp, cmdClusterJoin},
		{"leave", &clusterLeaveHelp, cmdClusterLeave},
		{"transfer-leadership", &clusterTransferHelp, cmdClusterTransfer},
	},
}

func cmdCluster(args []string, stdout, stderr io.Writer) int {
	return clusterCommands.run(args, stdout, stderr)
}

var clusterStatusHelp = cmdHelpText{
	usage:   "raftkv cluster status [flags]",
	summary: "show nodes, their liveness and every raft group",
	description: `Shows the cluster as the first reachable endpoint sees it: every registered
node and whether the answering node can reach it (a node-to-node ping on
the raft port; when the server does not report it, a /livez probe sent from
here, 1s each), every raft group with its leader, term, commit and applied
index, last snapshot and members, and every follower as its group's leader
sees it: reachable (the leader's heartbeats get through), LAG (the
leader's last log index minus the follower's, in entries) and LAST CONTACT
(how long ago the leader last heard from it). A dead node shows as
unreachable, with a lag and a last contact that grow. The followers come
from each group's leader, gathered through the answering node
(/v1/cluster/overview). A node that was removed from the cluster says so
first, with the way back. -o json prints the answering node's own status
(GET /v1/cluster) unchanged.`,
	examples: []string{
		"raftkv cluster status",
		"raftkv cluster status --endpoints 127.0.0.1:8081 -o json",
	},
}

func cmdClusterStatus(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("cluster status", clusterStatusHelp, stdout, stderr)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return inv.usageError("unexpected argument %q", pos[0])
	}
	c := inv.client()
	st, err := c.Cluster(inv.context())
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		var buf bytes.Buffer
		if json.Indent(&buf, st.Raw, "", "  ") != nil {
			buf.Reset()
			buf.Write(st.Raw)
		}
		buf.WriteByte('\n')
		stdout.Write(buf.Bytes())
		return 0
	}
	live := probeNodes(inv.context(), c, st.Nodes)
	// The followers' lag is known to each group's leader; a node that
	// cannot gather the others' statuses still shows its own groups'.
	ov, _ := c.Overview(inv.context())
	writeClusterStatus(stdout, st, live, leaderViews(st, ov))
	return 0
}

// leaderView is one group as its leader reported it.
type leaderView struct {
	group  string
	leader string
	client.GroupStatus
}

// leaderViews picks, for each group of st, the status of the node that
// leads it (the highest term among the nodes that say they lead it) from
// the overview, or from st itself.
func leaderViews(st client.ClusterStatus, ov client.Overview) []leaderView {
	statuses := []client.ClusterStatus{st}
	for _, n := range ov.Nodes {
		if n.Status != nil {
			statuses = append(statuses, *n.Status)
		}
	}
	var out []leaderView
	for _, g := range st.Groups {
		v := leaderView{group: g.Name}
		for _, s := range statuses {
			if lg, ok := s.Group(g.Name); ok && lg.State == "Leader" && (v.leader == "" || lg.Term > v.Term) {
				v.leader, v.GroupStatus = s.Node, lg
			}
		}
		out = append(out, v)
	}
	return out
}

// writeFollowers prints every follower as its group's leader sees it.
func writeFollowers(w io.Writer, views []leaderView) {
	fmt.Fprintln(w, "\nFollowers, as each group's leader sees them")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tLEADER\tFOLLOWER\tREACHABLE\tLAG\tLAST CONTACT")
	for _, v := range views {
		if v.leader == "" {
			fmt.Fprintf(tw, "%s\t-\t(no leader's view)\t-\t-\t-\n", v.group)
			continue
		}
		if len(v.Followers) == 0 {
			what := "(no other members)"
			if len(v.Voters)+len(v.Nonvoters) > 1 {
				what = "(not reported: an older raftkv)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\n", v.group, v.leader, what)
		}
		for _, f := range v.Followers {
			id, reach, lag := f.ID, "yes", "-"
			if !f.Voter {
				id += " (nonvoter)"
			}
			if !f.Reachable {
				reach = "no"
			}
			if f.LagEntries >= 0 {
				lag = strconv.FormatInt(f.LagEntries, 10)
			}
			contact := (time.Duration(f.LastContactMs) * time.Millisecond).Round(100 * time.Millisecond).String()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.group, v.leader, id, reach, lag, contact)
		}
	}
	tw.Flush()
}

// probeNodes asks every node's /livez in parallel and reports which
// answered within probeTimeout.
func probeNodes(ctx context.Context, c *client.Client, nodes []client.NodeInfo) []bool {
	up := make([]bool, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			if n.Reachable != nil {
				up[i] = *n.Reachable
				return
			}
			up[i] = n.HTTPAddr != "" && c.At(n.HTTPAddr).Live(pctx) == nil
		}()
	}
	wg.Wait()
	return up
}

func writeClusterStatus(w io.Writer, st client.ClusterStatus, live []bool, views []leaderView) {
	seenBy := st.Node
	if seenBy == "" {
		seenBy = "?"
	}
	fmt.Fprintf(w, "Cluster %s, %d shards, as seen by %s\n\n", st.ClusterID, st.Shards, seenBy)
	if r := st.Removed; r != nil {
		fmt.Fprintf(w, "%s WAS REMOVED FROM THE CLUSTER: %s.\nWhat follows is its own stale view; ask another node for the cluster's.\n\n", seenBy, r.Message)
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tHTTP\tRAFT\tSTAGE\tHEALTH\tREACHABLE FROM %s\n", seenBy)
	for i, n := range st.Nodes {
		state := "no"
		if live[i] {
			state = "yes"
		}
		health := "-" // only the meta leader watches health
		if h := n.Health; h != nil {
			health = h.Status
			if h.Status == "alive" && !h.Healthy {
				health = "alive, unhealthy"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, n.HTTPAddr, n.RaftAddr, orDash(n.Stage), health, state)
	}
	tw.Flush()
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tLEADER\tTERM\tCOMMIT\tAPPLIED\tSNAPSHOT\tVOTERS\tNONVOTERS")
	for _, g := range st.Groups {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n",
			g.Name, orDash(g.Leader), g.Term, g.CommitIndex, g.AppliedIndex, g.LastSnapshotIndex,
			joinOrDash(g.Voters), joinOrDash(g.Nonvoters))
	}
	tw.Flush()
	writeFollowers(w, views)

	if ev := st.RecentElections; len(ev) > 0 {
		const shown = 8
		fmt.Fprintf(w, "\nRecent elections on %s (newest last)\n", seenBy)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tGROUP\tEVENT\tCAUSE\tTERM")
		for _, e := range ev[max(0, len(ev)-shown):] {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", e.At.Local().Format("15:04:05.000"), e.Group, e.Event, e.Cause, e.Term)
		}
		tw.Flush()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinOrDash(ss []string) string { return orDash(strings.Join(ss, ",")) }

var clusterJoinHelp = cmdHelpText{
	usage:   "raftkv cluster join --id ID --raft-addr HOST:PORT --http-addr HOST:PORT [flags]",
	summary: "add a node to the cluster",
	description: `Asks the cluster to add a node and waits until it is a voter of every group.
The node must be running (started with the same addresses); "raftkv serve
--join" does this by itself. Repeating a join is harmless; an existing id
with new addresses updates them, so ids must be unique. The default
--timeout here is 60s because a new node first has to catch up.`,
	examples: []string{
		"raftkv cluster join --id node4 --raft-addr 127.0.0.1:7003 --http-addr 127.0.0.1:8083",
	},
}

func cmdClusterJoin(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("cluster join", clusterJoinHelp, stdout, stderr)
	inv.setDefault("timeout", membershipTimeout.String())
	id := inv.fs.String("id", "", "id of the node to add (required)")
	raftAddr := inv.fs.String("raft-addr", "", "the node's raft address (required)")
	httpAddr := inv.fs.String("http-addr", "", "the node's HTTP address (required)")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return inv.usageError("unexpected argument %q", pos[0])
	}
	if *id == "" || *raftAddr == "" || *httpAddr == "" {
		return inv.usageError("--id, --raft-addr and --http-addr are required")
	}
	if err := inv.client().Join(inv.context(), *id, *raftAddr, *httpAddr); err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, map[string]any{"joined": true, "id": *id, "raft_addr": *raftAddr, "http_addr": *httpAddr})
		return 0
	}
	fmt.Fprintf(stdout, "node %s joined (raft %s, http %s)\n", *id, *raftAddr, *httpAddr)
	return 0
}

var clusterLeaveHelp = cmdHelpText{
	usage:   "raftkv cluster leave ID [flags]   (or --id ID)",
	summary: "remove a node from the cluster",
	description: `Removes a node from every group (moving leadership off it first) and from
the node registry. The node may be down. The default --timeout here is 60s.`,
	examples: []string{
		"raftkv cluster leave node3",
		"raftkv cluster leave --id node3 --endpoints 127.0.0.1:8081",
	},
}

func cmdClusterLeave(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("cluster leave", clusterLeaveHelp, stdout, stderr)
	inv.setDefault("timeout", membershipTimeout.String())
	id := inv.fs.String("id", "", "id of the node to remove")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 1:
		return inv.usageError("leave takes one node id, got %d arguments", len(pos))
	case len(pos) == 1 && *id != "" && pos[0] != *id:
		return inv.usageError("node id given twice: %q and --id %q", pos[0], *id)
	case len(pos) == 1:
		*id = pos[0]
	}
	if *id == "" {
		return inv.usageError("which node? give its id")
	}
	if err := inv.client().Leave(inv.context(), *id); err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, map[string]any{"left": true, "id": *id})
		return 0
	}
	fmt.Fprintf(stdout, "node %s left the cluster\n", *id)
	return 0
}

var clusterTransferHelp = cmdHelpText{
	usage:   "raftkv cluster transfer-leadership --group GROUP [--to NODE] [flags]",
	summary: "move a group's leadership to another node",
	description: `Moves leadership of one raft group (meta or shard-K) to NODE, or to another
voter chosen by raft when --to is omitted. The group may also be given as
the only argument.`,
	examples: []string{
		"raftkv cluster transfer-leadership --group shard-2 --to node3",
		"raftkv cluster transfer-leadership meta",
	},
}

func cmdClusterTransfer(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("cluster transfer-leadership", clusterTransferHelp, stdout, stderr)
	group := inv.fs.String("group", "", "the group: meta or shard-K")
	to := inv.fs.String("to", "", "the node to hand leadership to (default: any other voter)")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 1:
		return inv.usageError("transfer-leadership takes one group, got %d arguments", len(pos))
	case len(pos) == 1 && *group != "" && pos[0] != *group:
		return inv.usageError("group given twice: %q and --group %q", pos[0], *group)
	case len(pos) == 1:
		*group = pos[0]
	}
	if *group == "" {
		return inv.usageError("--group is required")
	}
	if _, err := strconv.Atoi(*group); err == nil {
		*group = "shard-" + *group
	}
	if err := inv.client().TransferLeadership(inv.context(), *group, *to); err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, map[string]any{"transferred": true, "group": *group, "to": *to})
		return 0
	}
	if *to != "" {
		fmt.Fprintf(stdout, "leadership of %s transferred to %s\n", *group, *to)
	} else {
		fmt.Fprintf(stdout, "leadership of %s transferred\n", *group)
	}
	return 0
}
