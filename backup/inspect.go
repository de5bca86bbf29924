package backup

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/raftkv/raftkv/snapshot"
)

// GroupReport is what Inspect found for one group.
type GroupReport struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Index      uint64 `json:"index"`
	Term       uint64 `json:"term"`
	Records    uint64 `json:"records"`
	Bytes      int64  `json:"bytes"`
	ChecksumOK bool   `json:"checksum_ok"`
	Error      string `json:"error,omitempty"`
}

// Report is the result of Inspect.
type Report struct {
	Manifest Manifest      `json:"manifest"`
	Groups   []GroupReport `json:"groups"`
	// Transactions is the transactions section (format 2 on): the decision
	// restore applies to each transaction the checkpoints leave unfinished.
	Transactions []Decision `json:"transactions,omitempty"`
	OK           bool       `json:"ok"`
}

// Walk reads an archive, calling fn with each group's checkpoint stream in
// manifest order. fn must consume the stream; Walk then checks its size and
// SHA-256 against the manifest. Any mismatch is an error wrapping ErrCorrupt
// that names the group. The transactions section (format 2 on) is read and
// verified before the first group and returned in Manifest.Decisions.
func Walk(r io.Reader, fn func(rec GroupRecord, body io.Reader) error) (Manifest, error) {
	tr := tar.NewReader(r)
	m, err := readManifest(tr)
	if err != nil {
		return m, err
	}
	if m.Transactions != nil {
		if m.Decisions, err = readDecisions(tr, m.Transactions, m.Groups); err != nil {
			return m, err
		}
	}
	for _, rec := range m.Groups {
		fail := func(err error) (Manifest, error) { return m, &GroupError{Group: rec.Name, Err: err} }
		hdr, err := tr.Next()
		if err != nil {
			return fail(fmt.Errorf("%w: %s is missing: %v", ErrCorrupt, rec.File, err))
		}
		if hdr.Name != rec.File {
			return fail(fmt.Errorf("%w: expected %s, found %s", ErrCorrupt, rec.File, hdr.Name))
		}
		h := sha256.New()
		counted := &countingReader{r: io.TeeReader(tr, h)}
		if err := fn(rec, counted); err != nil {
			return fail(err)
		}
		// Drain what fn left so the checksum covers the whole entry.
		if _, err := io.Copy(io.Discard, counted); err != nil {
			return fail(fmt.Errorf("%w: reading %s: %v", ErrCorrupt, rec.File, err))
		}
		if counted.n != rec.Bytes {
			return fail(fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrCorrupt, rec.File, counted.n, rec.Bytes))
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != rec.SHA256 {
			return fail(fmt.Errorf("%w: SHA-256 of %s does not match the manifest", ErrCorrupt, rec.File))
		}
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		return m, fmt.Errorf("%w: unexpected data after the last checkpoint", ErrCorrupt)
	}
	return m, nil
}

// GroupError names the group whose checkpoint failed a check.
type GroupError struct {
	Group string
	Err   error
}

func (e *GroupError) Error() string { return fmt.Sprintf("group %s: %v", e.Group, e.Err) }
func (e *GroupError) Unwrap() error { return e.Err }

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Inspect checks every checkpoint of the archive at path, offline: manifest,
// sizes, SHA-256, and each checkpoint's own record checksums. It returns a
// report even when something failed; the error says what.
func Inspect(path string) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, err
	}
	defer f.Close()
	return Check(f)
}

// Check is Inspect of an archive read from r, for example while it is
// being downloaded: it reads r up to the end of the archive.
func Check(r io.Reader) (Report, error) {
	var rep Report
	m, err := Walk(r, func(rec GroupRecord, body io.Reader) error {
		g := GroupReport{Name: rec.Name, Bytes: rec.Bytes}
		sr, err := snapshot.NewReader(body)
		if err == nil {
			h := sr.Header()
			g.Kind, g.Index, g.Term = h.Kind, h.Index, h.Term
			if h.Group != rec.Name {
				err = fmt.Errorf("%w: checkpoint is of group %q", ErrCorrupt, h.Group)
			}
			for err == nil {
				if _, err = sr.Next(); err == nil {
					g.Records++
				}
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		g.ChecksumOK = err == nil
		rep.Groups = append(rep.Groups, g)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return nil
	})
	rep.Manifest = m
	rep.Transactions = m.Decisions
	var ge *GroupError
	if errors.As(err, &ge) {
		// Mark the failing group, whichever check caught it.
		i := len(rep.Groups) - 1
		if i < 0 || rep.Groups[i].Name != ge.Group {
			rep.Groups = append(rep.Groups, GroupReport{Name: ge.Group})
			i++
		}
		rep.Groups[i].ChecksumOK = false
		rep.Groups[i].Error = ge.Err.Error()
	}
	if err != nil {
		return rep, err
	}
	rep.OK = true
	return rep, nil
}
