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
