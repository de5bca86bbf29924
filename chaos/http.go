package chaos

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	kvclient "github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/nodeproc"
)

// Every request to the cluster goes through package client, which alone
// decides whether a failed request was sent and whether a write whose
// answer did not come may have happened (kvclient.ErrIndeterminate). The
// workload talks to one node per request, on purpose (the nemeses target
// nodes), so its clients have one endpoint each and no leader routing.
//
// The admin pool is for membership calls and listings, the op pool for the
// workload: separate connections, so a stuck workload connection never
// delays an admin call.
var (
	opHTTP    = &http.Client{Transport: newTransport()}
	adminHTTP = &http.Client{Transport: newTransport()}
	// nodeClients caches a client per pool and node address.
	nodeClients sync.Map // map[clientKey]*kvclient.Client
)

type clientKey struct {
	admin bool
	addr  string
}

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	}
}

func clientFor(admin bool, addr string) *kvclient.Client {
	k := clientKey{admin, addr}
	if c, ok := nodeClients.Load(k); ok {
		return c.(*kvclient.Client)
	}
	hc := opHTTP
	if admin {
		hc = adminHTTP
	}
	c, _ := nodeClients.LoadOrStore(k, kvclient.New([]string{addr}, kvclient.WithHTTPClient(hc), kvclient.WithUserAgent("raftkv-chaos")))
	return c.(*kvclient.Client)
}

// opClient is the workload's client of the node at addr.
func opClient(addr string) *kvclient.Client { return clientFor(false, addr) }

// adminClient is the client for admin calls to the node at addr.
func adminClient(addr string) *kvclient.Client { return clientFor(true, addr) }

// getStatusTimeout is nodeproc.FetchStatus within d.
func getStatusTimeout(ctx context.Context, addr string, d time.Duration) (*nodeproc.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return nodeproc.FetchStatus(ctx, addr)
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

// outcomeOf classifies the error of one call, with the client's judgment
// of what a failure means (client/doc.go, "Errors"):
//   - nil: ok;
//   - kvclient.ErrIndeterminate: info. That is a write that was sent and
//     then answered 504 or another 5xx (except raftkv's own 503), or whose
//     connection broke or deadline passed, or whose 200 could not be read;
//   - anything else: a definite failure, nothing happened. That is a 503
//     or 4xx answer (409 conflict, 412 precondition failed included), a
//     request that never left (the connection was refused), and every
//     failed read, since reads change nothing.
//
// status is the HTTP status of the answer (200 for nil), 0 when none
// arrived; msg says why it failed.
func outcomeOf(err error) (o Outcome, status int, msg string) {
	if err == nil {
		return OK, http.StatusOK, ""
	}
	o = Fail
	if errors.Is(err, kvclient.ErrIndeterminate) {
		o = Info
	}
	return o, kvclient.Status(err), errText(err)
}

// errText is an error's code and message for the history.
func errText(err error) string {
	var apiErr *kvclient.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code + ": " + apiErr.Message
	}
	return shortErr(err)
}

// kvResult is one key request's answer, already classified.
type kvResult struct {
	Outcome Outcome
	Status  int    // HTTP status, 0 when none arrived
	Found   bool   // read: the key exists
	Value   string // read: its value
	Rev     uint64 // read: its revision; write: the new revision; failed cas: the current one
	Err     string // why it failed or is indeterminate
}

// opDeadline is the client's deadline of a workload request. The client
// tells the server to give up a little earlier (9/10 of it), so a slow
// request ends with the server's timeout answer, and a paused or cut-off
// node yields an indeterminate answer instead of a hang.
const opDeadline = 3 * time.Second

// kvRequest runs one key operation f on the node at addr and classifies
// the answer as outcomeOf does; a read of an absent key (404) is ok with
// Found false. f is "read" (a linearizable Get), "write" (a Put), "cas" (a
// Put if the key's revision is expect) or "add" (a Put if the key is
// absent).
func kvRequest(ctx context.Context, addr, f, key string, value []byte, expect uint64) kvResult {
	ctx, cancel := context.WithTimeout(ctx, opDeadline)
	defer cancel()
	c := opClient(addr)
	var res kvResult
	var err error
	absent := false
	switch f {
	case "read":
		var v kvclient.Value
		v, err = c.Get(ctx, key)
		switch {
		case err == nil:
			res.Found, res.Value, res.Rev = true, string(v.Value), v.Revision
		case errors.Is(err, kvclient.ErrNotFound):
			err, absent = nil, true
		}
	default:
		var opts []kvclient.WriteOption
		switch f {
		case "cas":
			opts = append(opts, kvclient.IfMatch(expect))
		case "add":
			opts = append(opts, kvclient.IfAbsent())
		}
		var pr kvclient.PutResult
		pr, err = c.Put(ctx, key, value, opts...)
		res.Rev = pr.Revision
		var apiErr *kvclient.APIError
		if errors.As(err, &apiErr) {
			res.Rev = apiErr.CurrentRevision // a failed cas: the key's revision now
		}
	}
	res.Outcome, res.Status, res.Err = outcomeOf(err)
	if absent {
		res.Status = http.StatusNotFound
	}
	return res
}

// txnRequest runs one transaction on the node at addr. The client treats a
// transaction of gets only as a read: never indeterminate.
func txnRequest(ctx context.Context, addr string, t kvclient.Txn) (kvclient.TxnResult, error) {
	ctx, cancel := context.WithTimeout(ctx, opDeadline)
	defer cancel()
	return opClient(addr).Txn(ctx, t)
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s) > 120 {
		s = s[i+2:]
	}
	return s
}
