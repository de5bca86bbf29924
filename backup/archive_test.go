package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/snapshot"
)

// writeArchive builds an archive of groups, each holding `records` records.
func writeArchive(t *testing.T, groups []string, records int) string {
	t.Helper()
	w, err := NewWriter(t.TempDir(), Manifest{ClusterID: "c1", Shards: len(groups) - 1, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		err := w.AddGroup(g, 7, func(dst io.Writer) error {
			sw, err := snapshot.NewWriter(dst, snapshot.Header{Kind: "kv", Group: g, Index: 7, Term: 2})
			if err != nil {
				return err
			}
			for i := 0; i < records; i++ {
				if err := sw.WriteRecord([]byte(fmt.Sprintf("%s-record-%d", g, i))); err != nil {
					return err
				}
			}
			return sw.Close()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "b.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func TestInspectDescribesEveryGroup(t *testing.T) {
	path := writeArchive(t, []string{"meta", "shard-1", "shard-2"}, 5)
	rep, err := Inspect(path)
	if err != nil || !rep.OK {
		t.Fatalf("inspect: %v %+v", err, rep)
	}
	if len(rep.Groups) != 3 || rep.Manifest.ClusterID != "c1" {
		t.Fatalf("report %+v", rep)
	}
	for _, g := range rep.Groups {
		if !g.ChecksumOK || g.Records != 5 || g.Index != 7 || g.Term != 2 || g.Kind != "kv" {
			t.Fatalf("group %+v", g)
		}
	}
}

// Every single-byte flip and every truncation of an archive is reported as
// corrupt, and a damaged checkpoint is named.
func TestInspectDetectsEveryFlipAndTruncation(t *testing.T) {
	path := writeArchive(t, []string{"meta", "shard-1"}, 3)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// tar pads with zero blocks after the last entry; flips there change
	// no content, so only the bytes up to the last entry's data count.
	end := bytes.LastIndex(orig, []byte("shard-1-record-2")) + len("shard-1-record-2") + 64
	damaged := filepath.Join(t.TempDir(), "d.tar")
	for i := 0; i < end && i < len(orig); i++ {
		data := bytes.Clone(orig)
		data[i] ^= 0x20
		if err := os.WriteFile(damaged, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if rep, err := Inspect(damaged); err == nil && rep.OK {
			// A flip inside tar header fields that tar ignores (mode,
			// mtime, padding) is harmless only if the manifest and every
			// checkpoint still verify.
			if !bytes.Equal(tarPayload(t, data), tarPayload(t, orig)) {
				t.Fatalf("flip at byte %d went unnoticed", i)
			}
		}
	}
	// Cutting anywhere before the end of the last checkpoint's trailer (the
	// last record's CRC, then tag, count and checksum) loses data.
	dataEnd := bytes.LastIndex(orig, []byte("shard-1-record-2")) + len("shard-1-record-2") + 4 + 13
	for n := 0; n < dataEnd; n++ {
		if err := os.WriteFile(damaged, orig[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Inspect(damaged); err == nil {
			t.Fatalf("truncation to %d bytes went unnoticed", n)
		}
	}
}

// tarPayload returns the concatenated entry contents of a tar stream, or nil.
func tarPayload(t *testing.T, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	_, err := Walk(bytes.NewReader(data), func(_ GroupRecord, body io.Reader) error {
		_, err := io.Copy(&out, body)
		return err
	})
	if err != nil {
		return nil
	}
	return out.Bytes()
}

func TestInspectNamesTheDamagedGroup(t *testing.T) {
	path := writeArchive(t, []string{"meta", "shard-1", "shard-2"}, 4)
	data, _ := os.ReadFile(path)
	i := bytes.Index(data, []byte("shard-2-record-1"))
	data[i] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Inspect(path)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "shard-2") {
		t.Fatalf("error %v does not name shard-2", err)
	}
	last := rep.Groups[len(rep.Groups)-1]
	if last.Name != "shard-2" || last.ChecksumOK {
		t.Fatalf("report does not mark shard-2: %+v", rep.Groups)
	}
}

// FuzzInspect feeds arbitrary bytes to Inspect: it must answer with an
// error or a report, never panic, and never call damaged input OK.
func FuzzInspect(f *testing.F) {
	dir := f.TempDir()
	w, err := NewWriter(dir, Manifest{ClusterID: "c", Shards: 1, Node: "n"})
	if err != nil {
		f.Fatal(err)
	}
	_ = w.AddGroup("shard-1", 3, func(dst io.Writer) error {
		sw, err := snapshot.NewWriter(dst, snapshot.Header{Kind: "kv", Group: "shard-1", Index: 3})
		if err != nil {
			return err
		}
		if err := sw.WriteRecord([]byte("k")); err != nil {
			return err
		}
		return sw.Close()
	})
	var good bytes.Buffer
	if err := w.Finish(&good); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add([]byte{})
	f.Add([]byte("not a tar file"))
	path := filepath.Join(dir, "fuzz.tar")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := Inspect(path)
		if err == nil && !rep.OK {
			t.Fatalf("no error but not OK: %+v", rep)
		}
	})
}

// An archive written before the transactions section existed (format 1,
// by raftkv at 8e25221: one node, two shards, four accounts and one
// committed cross-shard transfer) still inspects cleanly.
func TestInspectReadsAFormat1Archive(t *testing.T) {
	rep, err := Inspect(filepath.Join("testdata", "format1.tar"))
	if err != nil || !rep.OK {
		t.Fatalf("inspect: %v %+v", err, rep)
	}
	if rep.Manifest.Format != 1 || rep.Manifest.Transactions != nil || rep.Transactions != nil || len(rep.Groups) != 3 {
		t.Fatalf("report %+v", rep)
	}
}

// writeDecided builds an archive of two shards whose transactions section
// holds ds.
func writeDecided(t *testing.T, ds []Decision) string {
	t.Helper()
	w, err := NewWriter(t.TempDir(), Manifest{ClusterID: "c1", Shards: 2, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"meta", "shard-1", "shard-2"} {
		err := w.AddGroup(g, 7, func(dst io.Writer) error {
			sw, err := snapshot.NewWriter(dst, snapshot.Header{Kind: "kv", Group: g, Index: 7, Term: 2})
			if err != nil {
				return err
			}
			return sw.Close()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	w.SetDecisions(ds)
	path := filepath.Join(t.TempDir(), "b.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := w.Finish(f); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTransactionsSectionRoundTrips(t *testing.T) {
	ds := []Decision{
		{ID: "shard-1.aa", Primary: "shard-1", Participants: []string{"shard-1", "shard-2"}, State: DecisionCommitted, Succeeded: true},
		{ID: "shard-2.bb", Primary: "shard-2", Participants: []string{"shard-2", "shard-1"}, State: DecisionAborted},
	}
	rep, err := Inspect(writeDecided(t, ds))
	if err != nil || !rep.OK {
		t.Fatalf("inspect: %v %+v", err, rep)
	}
	if rep.Manifest.Format != FormatVersion || rep.Manifest.Transactions == nil || rep.Manifest.Transactions.Count != 2 {
		t.Fatalf("manifest %+v", rep.Manifest)
	}
	if len(rep.Transactions) != 2 || rep.Transactions[0].ID != "shard-1.aa" || !rep.Transactions[0].Succeeded ||
		rep.Transactions[1].State != DecisionAborted {
		t.Fatalf("transactions %+v", rep.Transactions)
	}
}

// A transactions section that no backup could write is refused as corrupt
// by Inspect (and so by restore), naming the section.
func TestInspectRefusesABadTransactionsSection(t *testing.T) {
	for name, d := range map[string]Decision{
		"no id":             {Primary: "shard-1", State: DecisionAborted},
		"unknown state":     {ID: "shard-1.aa", Primary: "shard-1", State: "maybe"},
		"primary not there": {ID: "shard-9.aa", Primary: "shard-9", State: DecisionCommitted},
	} {
		rep, err := Inspect(writeDecided(t, []Decision{d}))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), transactionsName) || rep.OK {
			t.Errorf("%s: %v, want a corrupt %s", name, err, transactionsName)
		}
	}
	rep, err := Inspect(writeDecided(t, []Decision{
		{ID: "shard-1.aa", Primary: "shard-1", State: DecisionAborted},
		{ID: "shard-1.aa", Primary: "shard-1", State: DecisionCommitted},
	}))
	if !errors.Is(err, ErrCorrupt) || rep.OK {
		t.Errorf("one transaction decided twice: %v", err)
	}
	// A flipped byte in the section fails its checksum.
	path := writeDecided(t, []Decision{{ID: "shard-1.aa", Primary: "shard-1", State: DecisionCommitted}})
	data, _ := os.ReadFile(path)
	i := bytes.Index(data, []byte(`"committed"`))
	data[i+1] = 'C'
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Inspect(path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "SHA-256 of "+transactionsName) {
		t.Errorf("flipped section: %v", err)
	}
}
