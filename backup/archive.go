package backup

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FormatVersion is the archive format this package writes. It reads every
// format from 1 up to it:
//
//   - 1: the manifest, then one checkpoint per group.
//   - 2: adds the transactions section (transactions.json, right after the
//     manifest): the decision the backup took for every cross-shard
//     transaction its checkpoints leave unfinished, which restore applies so
//     the restored shards form one consistent cut.
const FormatVersion = 2

// oldestFormat is the oldest archive format this package still reads.
const oldestFormat = 1

const (
	manifestName     = "manifest.json"
	transactionsName = "transactions.json"
	// maxTransactionsBytes bounds the transactions section read into memory.
	maxTransactionsBytes = 256 << 20
)

// Errors returned when reading an archive.
var (
	// ErrCorrupt: the archive is damaged (bad tar, manifest, checksum or
	// checkpoint). The message names what failed.
	ErrCorrupt = errors.New("backup: corrupt archive")
	// ErrUnsupported: the archive was written by a newer format.
	ErrUnsupported = errors.New("backup: unsupported archive version")
)

// Manifest describes an archive.
type Manifest struct {
	Format    int           `json:"format"`
	ClusterID string        `json:"cluster_id"`
	Shards    int           `json:"shards"`
	Node      string        `json:"node"`
	CreatedAt time.Time     `json:"created_at"`
	Groups    []GroupRecord `json:"groups"`
	// Transactions describes the transactions section (format 2 on).
	Transactions *SectionRecord `json:"transactions,omitempty"`
	// Decisions is the transactions section itself, filled in by Walk once
	// it has verified it. It is stored in its own entry, not in the manifest.
	Decisions []Decision `json:"-"`
}

// SectionRecord describes a section of the archive other than a checkpoint.
type SectionRecord struct {
	File   string `json:"file"`
	Count  int    `json:"count"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Decision is how a backup settles one cross-shard transaction that some
// checkpoint in the archive leaves unfinished (a staged part, or a pending
// record on its primary). Restore applies it to every checkpoint: committed
// applies the staged writes of the chosen branch and releases the locks,
// aborted drops them; the primary's record takes the same decision.
type Decision struct {
	ID           string   `json:"id"`
	Primary      string   `json:"primary"`
	Participants []string `json:"participants,omitempty"`
	// State is DecisionCommitted or DecisionAborted.
	State string `json:"state"`
	// Succeeded, when committed: the success branch (else the failure one).
	Succeeded bool `json:"succeeded,omitempty"`
}

// Decision states.
const (
	DecisionCommitted = "committed"
	DecisionAborted   = "aborted"
)

func (d Decision) check() error {
	switch {
	case d.ID == "":
		return errors.New("a decision has no transaction id")
	case d.Primary == "":
		return fmt.Errorf("decision for %q names no primary shard", d.ID)
	case d.State != DecisionCommitted && d.State != DecisionAborted:
		return fmt.Errorf("decision for %q has state %q", d.ID, d.State)
	}
	return nil
}

// GroupRecord describes one group's checkpoint in the archive.
type GroupRecord struct {
	Name   string `json:"name"`
	File   string `json:"file"`
	Index  uint64 `json:"index"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Writer collects group checkpoints in a temporary folder, then writes the
// archive in one pass (tar needs each entry's size before its bytes).
type Writer struct {
	dir       string
	manifest  Manifest
	decisions []Decision
	onClose   func()
	closed    sync.Once
}

// NewWriter starts an archive; tmpDir holds the checkpoints until Finish.
func NewWriter(tmpDir string, m Manifest) (*Writer, error) {
	dir, err := os.MkdirTemp(tmpDir, "raftkv-backup-")
	if err != nil {
		return nil, err
	}
	m.Format = FormatVersion
	m.Groups = nil
	return &Writer{dir: dir, manifest: m}, nil
}

// AddGroup stores one group's checkpoint, written by write to a file.
func (w *Writer) AddGroup(name string, index uint64, write func(io.Writer) error) error {
	file := name + ".snap"
	f, err := os.Create(filepath.Join(w.dir, file))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if err := write(io.MultiWriter(f, h)); err != nil {
		return fmt.Errorf("checkpoint of %s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	w.manifest.Groups = append(w.manifest.Groups, GroupRecord{
		Name: name, File: file, Index: index, Bytes: st.Size(), SHA256: hex.EncodeToString(h.Sum(nil)),
	})
	return f.Close()
}

// SetDecisions sets the transactions section: the decision for every
// transaction the checkpoints leave unfinished.
func (w *Writer) SetDecisions(ds []Decision) { w.decisions = ds }

// Finish writes the archive to out and removes the temporary folder.
func (w *Writer) Finish(out io.Writer) error {
	defer w.Close()
	tw := tar.NewWriter(out)
	decisions := w.decisions
	if decisions == nil {
		decisions = []Decision{}
	}
	section, err := json.MarshalIndent(decisions, "", "  ")
	if err != nil {
		return err
	}
	sum := sha256.Sum256(section)
	w.manifest.Transactions = &SectionRecord{File: transactionsName, Count: len(decisions),
		Bytes: int64(len(section)), SHA256: hex.EncodeToString(sum[:])}
	data, err := json.MarshalIndent(w.manifest, "", "  ")
	if err != nil {
		return err
	}
	for _, e := range []struct {
		name string
		data []byte
	}{{manifestName, data}, {transactionsName, section}} {
		if err := writeEntry(tw, e.name, int64(len(e.data)), func(dst io.Writer) error {
			_, err := dst.Write(e.data)
			return err
		}); err != nil {
			return err
		}
	}
	for _, g := range w.manifest.Groups {
		err := writeEntry(tw, g.File, g.Bytes, func(dst io.Writer) error {
			f, err := os.Open(filepath.Join(w.dir, g.File))
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(dst, f)
			return err
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// OnClose sets f to run once, on the first Close (Finish closes too), after
// the temporary folder is gone: whoever counts staged archives learns the
// disk is free again.
func (w *Writer) OnClose(f func()) { w.onClose = f }

// Close removes the temporary folder; safe to call more than once.
func (w *Writer) Close() error {
	err := os.RemoveAll(w.dir)
	w.closed.Do(func() {
		if w.onClose != nil {
			w.onClose()
		}
	})
	return err
}

func writeEntry(tw *tar.Writer, name string, size int64, body func(io.Writer) error) error {
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	return body(tw)
}

// readManifest reads the first entry of an archive.
func readManifest(tr *tar.Reader) (Manifest, error) {
	var m Manifest
	hdr, err := tr.Next()
	if err != nil {
		return m, fmt.Errorf("%w: cannot read the first entry: %v", ErrCorrupt, err)
	}
	if hdr.Name != manifestName {
		return m, fmt.Errorf("%w: first entry is %q, not %s", ErrCorrupt, hdr.Name, manifestName)
	}
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil {
		return m, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	switch {
	case m.Format > FormatVersion:
		return m, fmt.Errorf("%w: format %d (this build reads %d to %d)", ErrUnsupported, m.Format, oldestFormat, FormatVersion)
	case m.Format < oldestFormat:
		return m, fmt.Errorf("%w: manifest format %d", ErrCorrupt, m.Format)
	case m.Format == 1 && m.Transactions != nil:
		return m, fmt.Errorf("%w: a format 1 manifest lists a transactions section", ErrCorrupt)
	case m.Format >= 2 && m.Transactions == nil:
		return m, fmt.Errorf("%w: format %d manifest lists no transactions section", ErrCorrupt, m.Format)
	}
	return m, nil
}

// readDecisions reads and verifies the transactions section, the entry
// after the manifest in format 2 on.
func readDecisions(tr *tar.Reader, rec *SectionRecord, groups []GroupRecord) ([]Decision, error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("%w: %s is missing: %v", ErrCorrupt, rec.File, err)
	}
	if hdr.Name != rec.File || rec.File != transactionsName {
		return nil, fmt.Errorf("%w: expected %s, found %s", ErrCorrupt, transactionsName, hdr.Name)
	}
	if rec.Bytes < 0 || rec.Bytes > maxTransactionsBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes (the limit is %d)", ErrCorrupt, rec.File, rec.Bytes, maxTransactionsBytes)
	}
	data, err := io.ReadAll(io.LimitReader(tr, rec.Bytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrCorrupt, rec.File, err)
	}
	if int64(len(data)) != rec.Bytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrCorrupt, rec.File, len(data), rec.Bytes)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != rec.SHA256 {
		return nil, fmt.Errorf("%w: SHA-256 of %s does not match the manifest", ErrCorrupt, rec.File)
	}
	var ds []Decision
	if err := json.Unmarshal(data, &ds); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, rec.File, err)
	}
	if len(ds) != rec.Count {
		return nil, fmt.Errorf("%w: %s holds %d decisions, the manifest says %d", ErrCorrupt, rec.File, len(ds), rec.Count)
	}
	inArchive := map[string]bool{}
	for _, g := range groups {
		inArchive[g.Name] = true
	}
	seen := map[string]bool{}
	for _, d := range ds {
		if err := d.check(); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, rec.File, err)
		}
		if !inArchive[d.Primary] {
			return nil, fmt.Errorf("%w: %s: transaction %q has primary %q, which is not in the archive", ErrCorrupt, rec.File, d.ID, d.Primary)
		}
		if seen[d.ID] {
			return nil, fmt.Errorf("%w: %s decides %q twice", ErrCorrupt, rec.File, d.ID)
		}
		seen[d.ID] = true
	}
	return ds, nil
}
