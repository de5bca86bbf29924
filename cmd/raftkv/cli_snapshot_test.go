package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/backup"
)

// snapshot inspect of an archive written before the transactions section
// existed says so.
func TestSnapshotInspectOfAFormat1Archive(t *testing.T) {
	code, out, errOut := runCLI(t, "snapshot", "inspect", filepath.Join("..", "..", "backup", "testdata", "format1.tar"))
	if code != 0 || !strings.Contains(out, "Format 1") || !strings.Contains(out, "No transactions section (format 1)") {
		t.Fatalf("inspect of a format 1 archive: exit %d\n%s%s", code, out, errOut)
	}
}

// The inspect report lists the transactions section's decisions.
func TestInspectReportListsDecisions(t *testing.T) {
	var b strings.Builder
	rep := decidedReport()
	writeInspectReport(&b, rep)
	for _, want := range []string{
		`(?m)^Format 2, cluster c1, 2 shards`,
		`(?m)^Transactions: 2 left open by the checkpoints, decided by the backup \(1 committed, 1 aborted\); restore finishes them\.$`,
		`(?m)^TRANSACTION\s+DECISION\s+PARTICIPANTS$`,
		`(?m)^shard-1\.aa\s+committed \(success branch\)\s+shard-1,shard-2$`,
		`(?m)^shard-2\.bb\s+aborted\s+shard-2,shard-1$`,
	} {
		if !regexp.MustCompile(want).MatchString(b.String()) {
			t.Errorf("report lacks %s:\n%s", want, b.String())
		}
	}
}

func decidedReport() backup.Report {
	return backup.Report{
		Manifest: backup.Manifest{Format: 2, ClusterID: "c1", Shards: 2, Node: "n1",
			Transactions: &backup.SectionRecord{File: "transactions.json", Count: 2}},
		Groups: []backup.GroupReport{{Name: "shard-1", Kind: "kv.2", Index: 9, ChecksumOK: true}},
		Transactions: []backup.Decision{
			{ID: "shard-1.aa", Primary: "shard-1", Participants: []string{"shard-1", "shard-2"}, State: backup.DecisionCommitted, Succeeded: true},
			{ID: "shard-2.bb", Primary: "shard-2", Participants: []string{"shard-2", "shard-1"}, State: backup.DecisionAborted},
		},
		OK: true,
	}
}
