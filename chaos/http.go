package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/internal/nodeproc"
)

// adminClient is for membership calls and listings; opClient for the
// workload. Separate pools, so a stuck workload connection never delays an
// admin call.
var (
	adminClient = &http.Client{Timeout: 5 * time.Second, Transport: newTransport()}
	opClient    = &http.Client{Transport: newTransport()}
)

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	}
}

// getStatusTimeout is nodeproc.FetchStatus within d.
func getStatusTimeout(ctx context.Context, addr string, d time.Duration) (*nodeproc.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return nodeproc.FetchStatus(ctx, addr)
}

// postJSON sends an admin POST and returns status and body.
func postJSON(ctx context.Context, addr, path string, v any, timeout time.Duration) (int, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return call(ctx, adminClient, http.MethodPost, "http://"+addr+path, b, nil)
}

func call(ctx context.Context, c *http.Client, method, u string, body []byte, hdr map[string]string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, b, nil
}

// Outcome is how an operation ended.
type Outcome string

// The three outcomes. Indeterminate ("info", as Jepsen calls it) means the
// operation may or may not have taken effect.
const (
	OK   Outcome = "ok"
	Fail Outcome = "fail"
	Info Outcome = "info"
)

// kvResult is one key request's answer, already classified.
type kvResult struct {
	Outcome Outcome
	Status  int    // HTTP status, 0 when none arrived
	Found   bool   // read: the key exists
	Value   string // read: its value
	Rev     uint64 // read: its revision; write: the new revision
	Err     string // why it failed or is indeterminate
}

// opTimeout is the server-side deadline of a workload request; the client
// gives up a second later, so a paused or cut-off node yields an
// indeterminate answer instead of a hang.
const opTimeout = 2 * time.Second

// kvRequest sends one key request to addr and classifies the answer:
//   - 2xx: ok (a read's 404 too: the key is absent);
//   - 503 and 4xx: a definite failure, the operation did not happen;
//   - a request that never left (the connection was refused): failure;
//   - 504, any other 5xx, a timeout or a connection broken mid-request:
//     indeterminate for writes, a plain failure for reads (which change
//     nothing).
func kvRequest(ctx context.Context, addr, method, key string, body []byte, hdr map[string]string) kvResult {
	ctx, cancel := context.WithTimeout(ctx, opTimeout+time.Second)
	defer cancel()
	u := "http://" + addr + "/v1/kv/" + url.PathEscape(key) + "?timeout=" + opTimeout.String()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	write := method != http.MethodGet
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return kvResult{Outcome: Fail, Err: err.Error()}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := opClient.Do(req)
	if err != nil {
		if neverSent(err) || !write {
			return kvResult{Outcome: Fail, Err: shortErr(err)}
		}
		return kvResult{Outcome: Info, Err: shortErr(err)}
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	res := kvResult{Status: resp.StatusCode}
	switch {
	case rerr != nil:
		res.Outcome, res.Err = Info, shortErr(rerr)
		if !write {
			res.Outcome = Fail
		}
		return res
	case resp.StatusCode == http.StatusOK:
		res.Outcome = OK
		res.Rev = parseETag(resp.Header.Get("ETag"))
		if !write {
			res.Found, res.Value = true, string(b)
		}
	case resp.StatusCode == http.StatusNotFound && !write:
		res.Outcome = OK
	case resp.StatusCode == http.StatusPreconditionFailed:
		res.Outcome = Fail
		res.Rev = parseETag(resp.Header.Get("ETag"))
	case resp.StatusCode == http.StatusServiceUnavailable || (resp.StatusCode >= 400 && resp.StatusCode < 500):
		res.Outcome, res.Err = Fail, errCode(b)
	default:
		res.Outcome, res.Err = Info, errCode(b)
		if !write {
			res.Outcome = Fail
		}
	}
	return res
}

func parseETag(s string) uint64 {
	v, _ := strconv.ParseUint(strings.Trim(s, `"`), 10, 64)
	return v
}

func errCode(body []byte) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return e.Error.Code + ": " + e.Error.Message
	}
	return string(bytes.TrimSpace(body))
}

// neverSent reports whether err means the request never reached a server:
// the connection was refused or could not be opened.
func neverSent(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s) > 120 {
		s = s[i+2:]
	}
	return s
}
