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

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

const manifestName = "manifest.json"

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
	dir      string
	manifest Manifest
	onClose  func()
	closed   sync.Once
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

// Finish writes the archive to out and removes the temporary folder.
func (w *Writer) Finish(out io.Writer) error {
	defer w.Close()
	tw := tar.NewWriter(out)
	data, err := json.MarshalIndent(w.manifest, "", "  ")
	if err != nil {
		return err
	}
	if err := writeEntry(tw, manifestName, int64(len(data)), func(dst io.Writer) error {
		_, err := dst.Write(data)
		return err
	}); err != nil {
		return err
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
	if m.Format != FormatVersion {
		return m, fmt.Errorf("%w: format %d (this build reads %d)", ErrUnsupported, m.Format, FormatVersion)
	}
	return m, nil
}
