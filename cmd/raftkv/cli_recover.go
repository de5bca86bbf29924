package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/raftkv/raftkv/cluster"
)

var recoverHelp = cmdHelpText{
	usage:   "raftkv recover --data-dir DIR --peers peers.json",
	summary: "offline: make the survivors of an outage the whole cluster",
	description: `For when a majority of the nodes is lost for good and no group can elect a
leader. Run it on each surviving node while it is stopped: it rewrites the
membership of every group (meta and its node registry included) in the
node's data dir to the survivors listed in peers.json, a JSON array such as

  [{"id": "node1"}, {"id": "node3", "raft_addr": "10.0.0.3:7000"}]

(raft_addr only for a survivor whose address changed). Give every survivor
the same file. Then start the survivors with 'raftkv serve' as before; they
elect leaders among themselves, and new nodes join them as usual.

What it costs: a write acknowledged only by lost nodes is gone, and log
entries a survivor held but that were never committed become committed. Do
not let a lost node come back afterwards with its old data: wipe it and let
it join anew. The data dir must not be in use (a running node holds it).`,
	examples: []string{
		`echo '[{"id":"node1"}]' > peers.json`,
		"raftkv recover --data-dir ./raftkv-data --peers peers.json",
		"raftkv serve --data-dir ./raftkv-data --id node1",
	},
}

func cmdRecover(args []string, stdout, stderr io.Writer) int {
	inv := newCommand("recover", recoverHelp, stdout, stderr)
	var dataDir, peers string
	inv.fs.StringVar(&dataDir, "data-dir", "", "data dir of the stopped survivor to rewrite")
	inv.fs.StringVar(&peers, "peers", "", "JSON file listing the surviving nodes")
	inv.outputFlag(false)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		return inv.usageError("unexpected argument %q", pos[0])
	case dataDir == "" || peers == "":
		return inv.usageError("--data-dir and --peers are required")
	}
	survivors, err := cluster.ReadSurvivors(peers)
	if err != nil {
		return inv.fail(err)
	}
	rep, err := cluster.RecoverDataDir(cluster.RecoverConfig{DataDir: dataDir, Survivors: survivors})
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, rep)
		return 0
	}
	voters := make([]string, len(rep.Voters))
	for i, v := range rep.Voters {
		voters[i] = v.ID
	}
	fmt.Fprintf(stdout, "Recovered node %s: every group's voters are now %s", rep.NodeID, strings.Join(voters, ", "))
	if len(rep.Removed) > 0 {
		fmt.Fprintf(stdout, "; removed %s", strings.Join(rep.Removed, ", "))
	}
	fmt.Fprintln(stdout, ".")
	for _, g := range rep.Groups {
		fmt.Fprintf(stdout, "  %-10s checkpoint at index %d\n", g.Name, g.Index)
	}
	fmt.Fprintf(stdout, "Start it again with 'raftkv serve --data-dir %s' and its usual flags.\n", dataDir)
	return 0
}
