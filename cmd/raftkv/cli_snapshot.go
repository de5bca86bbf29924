package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/cluster"
)

// backupTimeout is the default --timeout of snapshot save: the node sends a
// checkpoint of every group, which takes longer than a key operation.
const backupTimeout = 2 * time.Minute

// snapshotCommands are the subcommands of "raftkv snapshot".
var snapshotCommands = subcommands{
	group: "snapshot",
	help:  cmdHelpText{summary: "save, inspect and restore backups"},
	list: []commandEntry{
		{"save", &snapshotSaveHelp, cmdSnapshotSave},
		{"inspect", &snapshotInspectHelp, cmdSnapshotInspect},
		{"restore", &snapshotRestoreHelp, cmdSnapshotRestore},
	},
}

func cmdSnapshot(args []string, stdout, stderr io.Writer) int {
	return snapshotCommands.run(args, stdout, stderr)
}

var snapshotSaveHelp = cmdHelpText{
	usage:   "raftkv snapshot save FILE [flags]",
	summary: "save a consistent backup of the whole cluster to a file",
	description: `Asks a node for a backup of the whole cluster (GET /v1/backup): a consistent
checkpoint of every raft group holding every write acknowledged before the
request, with a manifest and SHA-256 checksums. The file is written under a
temporary name, verified, then renamed to FILE.`,
	examples: []string{"raftkv snapshot save backup.tar --endpoints 127.0.0.1:8080"},
}

func cmdSnapshotSave(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("snapshot save", snapshotSaveHelp, stdout, stderr)
	inv.setDefault("timeout", backupTimeout.String())
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one FILE")
	}
	// The client writes the archive under a temporary name, checks it as
	// it streams in (manifest, SHA-256 of every checkpoint, record
	// checksums, the archive's end), fsyncs it and only then renames it
	// to FILE. --timeout bounds the whole download.
	rep, err := inv.client().SaveBackup(inv.context(), pos[0])
	if err != nil {
		return inv.fail(err)
	}
	if inv.json() {
		_ = printJSON(stdout, rep)
		return 0
	}
	fmt.Fprintf(stdout, "Saved a backup of cluster %s (%d groups) to %s\n", rep.Manifest.ClusterID, len(rep.Groups), pos[0])
	return 0
}

var snapshotInspectHelp = cmdHelpText{
	usage:   "raftkv snapshot inspect FILE [-o json]",
	summary: "check a backup file offline and describe it",
	description: `Checks a backup file without a cluster: the manifest, each checkpoint's size
and SHA-256, and every record checksum inside it. Prints the format version,
groups, indices, record counts (keys, for shards), sizes and checksum status,
then the transactions section (format 2): the decision the backup took for
each cross-shard transaction its checkpoints leave open, which restore
applies. Exits 1 if anything fails to verify.`,
	examples: []string{"raftkv snapshot inspect backup.tar"},
}

func cmdSnapshotInspect(args []string, stdout, stderr io.Writer) int {
	inv := newCommand("snapshot inspect", snapshotInspectHelp, stdout, stderr)
	inv.outputFlag(false)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one FILE")
	}
	rep, err := backup.Inspect(pos[0])
	// A file that is no archive at all has nothing to report but the error.
	readSome := rep.Manifest.Format != 0 || len(rep.Groups) > 0
	switch {
	case !readSome:
	case inv.json():
		_ = printJSON(stdout, rep)
	default:
		writeInspectReport(stdout, rep)
	}
	if err != nil {
		return inv.fail(err)
	}
	return 0
}

func writeInspectReport(w io.Writer, rep backup.Report) {
	m := rep.Manifest
	fmt.Fprintf(w, "Format %d, cluster %s, %d shards, taken on %s at %s\n\n", m.Format, m.ClusterID, m.Shards, m.Node, m.CreatedAt.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tKIND\tINDEX\tRECORDS\tBYTES\tCHECKSUM")
	for _, g := range rep.Groups {
		status := "ok"
		if !g.ChecksumOK {
			status = "FAILED: " + g.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", g.Name, g.Kind, g.Index, g.Records, g.Bytes, status)
	}
	tw.Flush()
	writeDecisions(w, rep)
}

// writeDecisions describes the transactions section: the decision restore
// applies to each cross-shard transaction the checkpoints leave open.
func writeDecisions(w io.Writer, rep backup.Report) {
	if rep.Manifest.Transactions == nil {
		if rep.Manifest.Format == 1 {
			fmt.Fprintln(w, "\nNo transactions section (format 1): shards are consistent each on its own, and open transactions are left to recovery after a restore.")
		}
		return
	}
	committed := 0
	for _, d := range rep.Transactions {
		if d.State == backup.DecisionCommitted {
			committed++
		}
	}
	fmt.Fprintf(w, "\nTransactions: %d left open by the checkpoints, decided by the backup (%d committed, %d aborted); restore finishes them.\n",
		len(rep.Transactions), committed, len(rep.Transactions)-committed)
	if len(rep.Transactions) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTRANSACTION\tDECISION\tPARTICIPANTS")
	for _, d := range rep.Transactions {
		state := d.State
		if d.State == backup.DecisionCommitted {
			state += " (success branch)"
			if !d.Succeeded {
				state = d.State + " (failure branch)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.ID, state, strings.Join(d.Participants, ","))
	}
	tw.Flush()
}

var snapshotRestoreHelp = cmdHelpText{
	usage:   "raftkv snapshot restore FILE --data-dir DIR --id ID --raft-addr ADDR --http-addr ADDR",
	summary: "build a new node's data dir from a backup file",
	description: `Builds the data dir of a new single-node cluster that holds the backup's data
in every shard (a new cluster id; the old membership is not kept). Start it
with 'raftkv serve' and the same --data-dir, --id, --raft-addr and
--http-addr, then join more nodes as usual. The backup is verified first; a
backup whose checksums fail is refused, naming what failed. Restore then
finishes, on every shard, each transaction the backup decided (its
transactions section), so the new cluster starts from one consistent cut.
DIR must be empty or absent.`,
	examples: []string{
		"raftkv snapshot restore backup.tar --data-dir ./n1 --id node1 --raft-addr 127.0.0.1:7000 --http-addr 127.0.0.1:8080",
		"raftkv serve --data-dir ./n1 --id node1 --raft-addr 127.0.0.1:7000 --http-addr 127.0.0.1:8080",
	},
}

func cmdSnapshotRestore(args []string, stdout, stderr io.Writer) int {
	inv := newCommand("snapshot restore", snapshotRestoreHelp, stdout, stderr)
	var rc cluster.RestoreConfig
	inv.fs.StringVar(&rc.DataDir, "data-dir", "", "data dir to create for the new node")
	inv.fs.StringVar(&rc.NodeID, "id", "node1", "id of the new node")
	inv.fs.StringVar(&rc.RaftAddr, "raft-addr", "127.0.0.1:7000", "raft address of the new node (as peers dial it)")
	inv.fs.StringVar(&rc.HTTPAddr, "http-addr", "127.0.0.1:8080", "HTTP address of the new node (as peers dial it)")
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError("give exactly one FILE")
	}
	if rc.DataDir == "" {
		return inv.usageError("--data-dir is required")
	}
	rep, err := cluster.RestoreDataDir(pos[0], rc)
	if err != nil {
		if !rep.OK && len(rep.Groups) > 0 {
			writeInspectReport(stderr, rep)
		}
		return inv.fail(err)
	}
	abs, _ := filepath.Abs(rc.DataDir)
	fmt.Fprintf(stdout, "Restored %d shards into %s. Start the node with:\n  raftkv serve --data-dir %s --id %s --raft-addr %s --http-addr %s\n",
		rep.Manifest.Shards, abs, rc.DataDir, rc.NodeID, rc.RaftAddr, rc.HTTPAddr)
	return 0
}
