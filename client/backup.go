package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/raftkv/raftkv/backup"
)

// Backup downloads a consistent backup of the whole cluster (GET
// /v1/backup) and writes it to w as it streams in, checking it on the way
// exactly as `raftkv snapshot inspect` checks a file: the manifest, each
// checkpoint's size and SHA-256, every record checksum inside it, and the
// archive's end. It returns the report of that check.
//
// An endpoint answering 429 overloaded (it already stages as many backups
// as it may) or 503 unavailable passes the request to the next endpoint,
// since each node stages its own; the last such answer is returned when
// none could serve it. Once bytes have reached w, nothing is retried: a
// stream cut short is a *RequestError (ErrTimeout when the deadline cut
// it), and an archive that does not verify is an error wrapping
// backup.ErrCorrupt. Either way w holds a partial archive that must not be
// used; SaveBackup takes care of that for a file.
//
// The node stages the backup on its disk first, which takes a while on a
// large cluster: give the call a context (or WithTimeout) of minutes, as
// `raftkv snapshot save` does (2 minutes by default).
func (c *Client) Backup(ctx context.Context, w io.Writer) (backup.Report, error) {
	var rep backup.Report
	r := request{method: http.MethodGet, path: "/v1/backup", nextOnBusy: true}
	r.sink = func(base, node string, body io.Reader) error {
		var err error
		rep, err = copyVerified(ctx, r.op(), base, node, body, w)
		return err
	}
	if _, err := c.do(ctx, r); err != nil {
		return rep, err
	}
	return rep, nil
}

// copyVerified copies an archive from body to w and checks it on the way.
func copyVerified(ctx context.Context, op, base, node string, body io.Reader, w io.Writer) (backup.Report, error) {
	in := &errReader{r: body}
	out := &errWriter{w: w}
	rep, err := backup.Check(io.TeeReader(in, out))
	if err == nil {
		// Whatever follows the archive's end (nothing, from a raftkv
		// node) is copied too, so w holds exactly what was sent.
		_, err = io.Copy(out, in)
	}
	switch {
	case out.err != nil:
		return rep, fmt.Errorf("raftkv: writing the backup: %w", out.err)
	case in.err != nil:
		return rep, &RequestError{Op: op, Endpoint: base, Sent: true,
			Timeout: errors.Is(ctx.Err(), context.DeadlineExceeded),
			Err:     fmt.Errorf("the backup stream from node %q broke off: %w", node, in.err)}
	case err != nil:
		return rep, fmt.Errorf("raftkv: the backup from node %q does not verify: %w", node, err)
	}
	return rep, nil
}

// errReader remembers the first read error other than io.EOF.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// errWriter remembers the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// SaveBackup is Backup into the file path, which appears only once the
// whole archive is written, fsynced and verified: the download goes to
// path+".partial", which is removed if anything fails, and is then renamed
// to path.
func (c *Client) SaveBackup(ctx context.Context, path string) (backup.Report, error) {
	tmp := path + ".partial"
	f, err := os.Create(tmp)
	if err != nil {
		return backup.Report{}, err
	}
	rep, err := c.Backup(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return rep, err
	}
	return rep, nil
}
