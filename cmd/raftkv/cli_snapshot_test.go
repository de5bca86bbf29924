package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/backup"
	"github.com/raftkv/raftkv/raftkvtest"
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

// snapshot save writes a backup of a real cluster that verifies, past a
// dead first endpoint, and leaves no temporary file.
func TestSnapshotSaveWritesAVerifiedArchive(t *testing.T) {
	c := raftkvtest.NewCluster(t, 3, 2)
	if r := raftkvtest.Put(c.Nodes[0].HTTPAddr, "k", "v"); r.Status != 200 {
		t.Fatalf("put: %d %s", r.Status, r.Body)
	}
	file := filepath.Join(t.TempDir(), "backup.tar")
	eps := deadAddr(t) + "," + c.Nodes[1].HTTPAddr
	code, out, errOut := runCLI(t, "snapshot", "save", file, "--endpoints", eps)
	if code != 0 {
		t.Fatalf("snapshot save: exit %d\n%s%s", code, out, errOut)
	}
	rep, err := backup.Inspect(file)
	if err != nil {
		t.Fatalf("the saved file does not verify: %v", err)
	}
	if want := "Saved a backup of cluster " + rep.Manifest.ClusterID + " (3 groups) to " + file + "\n"; out != want {
		t.Fatalf("stdout %q, want %q", out, want)
	}
	if _, err := os.Stat(file + ".partial"); !os.IsNotExist(err) {
		t.Fatalf("the temporary file is left: %v", err)
	}

	code, out, errOut = runCLI(t, "snapshot", "save", file, "--endpoints", c.Nodes[2].HTTPAddr, "-o", "json")
	var got backup.Report
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || !got.OK || len(got.Groups) != 3 {
		t.Fatalf("snapshot save -o json: exit %d\n%s%s", code, out, errOut)
	}
}

// An archive that does not verify is refused: exit 1, and neither FILE nor
// the temporary file is left.
func TestSnapshotSaveRefusesAnArchiveThatDoesNotVerify(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("..", "..", "backup", "testdata", "format1.tar"))
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 0xff
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(bad) }))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "backup.tar")
	code, out, errOut := runCLI(t, "snapshot", "save", file, "--endpoints", srv.URL)
	if code != 1 || !strings.Contains(errOut, "does not verify") {
		t.Fatalf("snapshot save of a corrupt archive: exit %d\n%s%s", code, out, errOut)
	}
	for _, p := range []string{file, file + ".partial"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused backup (%v)", p, err)
		}
	}
}

// A file that is not an archive gets the error alone, not an empty report.
func TestSnapshotInspectOfANonArchiveSaysSoOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, []byte("not an archive\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"snapshot", "inspect", path}, {"snapshot", "inspect", "-o", "json", path}} {
		code, out, errOut := runCLI(t, args...)
		if code != 1 || out != "" || !strings.Contains(errOut, "corrupt archive") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1, no report, the error", args, code, out, errOut)
		}
	}
}
