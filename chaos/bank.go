package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	kvclient "github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/keyspace"
	"github.com/raftkv/raftkv/internal/nodeproc"
)

// Bank workload parameters: at least bankAccounts accounts (one per shard
// when there are more shards), each starting with bankInitial.
const (
	bankAccounts  = 8
	bankInitial   = 100
	bankMaxAmount = 30
	// bankReadShare is the share of steps (out of 10) that read every
	// account; the rest are transfers.
	bankReadShare = 2
)

// bankWorkload moves money between accounts spread over every shard. A
// transfer is one transaction: it compares both accounts' revisions with
// the ones just read and writes both new balances. A read-all is a
// transaction of gets on every account. The checker needs only totals: a
// transfer is atomic, so the sum of all balances must stay the initial
// total in every read-all that succeeds and at the end, whatever happened
// to indeterminate transfers; no balance may ever be negative.
type bankWorkload struct {
	prefix   string
	accounts []string // set by Setup, read-only afterwards
	shardOf  map[string]string
	total    int64
}

func newBankWorkload(runID string) *bankWorkload {
	return &bankWorkload{prefix: "chaos/" + runID + "/bank/", shardOf: map[string]string{}}
}

func (w *bankWorkload) Name() string { return "bank" }

// Setup picks the account keys so that they cover every shard round robin
// and writes the initial balances (plain PUTs, retried; the same value
// every time, so a retry after an unknown outcome is harmless). It then
// checks the total with a read-all.
func (w *bankWorkload) Setup(ctx context.Context, c *Cluster) error {
	shards := c.Shards // known: read from the cluster when it was started or attached to
	n := max(bankAccounts, shards)
	for i := range n {
		want := fmt.Sprintf("shard-%d", 1+i%shards)
		for j := 0; ; j++ {
			k := fmt.Sprintf("%sacct%02d-%d", w.prefix, i, j)
			if keyspace.ShardFor(k, shards) == want {
				w.accounts = append(w.accounts, k)
				w.shardOf[k] = want
				break
			}
		}
	}
	w.total = int64(n) * bankInitial
	initial := []byte(strconv.Itoa(bankInitial))
	for _, k := range w.accounts {
		err := nodeproc.WaitFor(ctx, 30*time.Second, func() error {
			var last string
			for _, p := range c.Up() {
				r := kvRequest(ctx, p.HTTPAddr, "write", k, initial, 0)
				if r.Outcome == OK {
					return nil
				}
				last = fmt.Sprintf("%s: %d %s", p.ID, r.Status, r.Err)
			}
			return fmt.Errorf("initial balance of %s: %s", k, last)
		})
		if err != nil {
			return err
		}
	}
	return nodeproc.WaitFor(ctx, 30*time.Second, func() error {
		for _, p := range c.Up() {
			bal, err := w.readAll(ctx, p.HTTPAddr)
			if err != nil {
				continue
			}
			if sum := sumOf(bal); sum != w.total {
				return fmt.Errorf("total after setup is %d, want %d", sum, w.total)
			}
			return nil
		}
		return errors.New("no node answered the read-all after setup")
	})
}

func (w *bankWorkload) Step(ctx context.Context, cl *client, _ int) {
	if cl.rng.IntN(10) < bankReadShare {
		w.stepReadAll(ctx, cl)
		return
	}
	w.stepTransfer(ctx, cl)
}

// stepReadAll reads every account in one transaction and records the
// balances (comma separated, in account order) and their total.
func (w *bankWorkload) stepReadAll(ctx context.Context, cl *client) {
	w.record(ctx, cl, Op{F: "read-all"}, w.readAllTxn(), func(op *Op, a kvclient.TxnResult) {
		bal, err := balances(w.accounts, a.Results)
		if err != nil {
			op.Err = err.Error()
			return
		}
		op.Result = joinBalances(bal)
		op.Value = strconv.FormatInt(sumOf(bal), 10)
	})
}

// stepTransfer reads two distinct accounts, then moves a random amount
// from the richer-enough one to the other, conditional on both revisions
// being unchanged.
func (w *bankWorkload) stepTransfer(ctx context.Context, cl *client) {
	i := cl.rng.IntN(len(w.accounts))
	j := cl.rng.IntN(len(w.accounts) - 1)
	if j >= i {
		j++
	}
	from, to := w.accounts[i], w.accounts[j]
	p := cl.addr()
	a, err := txnRequest(ctx, p.HTTPAddr, kvclient.Txn{Success: []kvclient.TxnOp{kvclient.GetOp(from), kvclient.GetOp(to)}})
	if err != nil || !a.Succeeded || len(a.Results) != 2 {
		// Reads change nothing; just try elsewhere if the node is gone.
		if st := kvclient.Status(err); err != nil && (st == 0 || st == http.StatusServiceUnavailable) {
			cl.node++
		}
		return
	}
	bal, err := balances([]string{from, to}, a.Results)
	if err != nil {
		return
	}
	if bal[0] <= 0 {
		from, to = to, from
		bal[0], bal[1] = bal[1], bal[0]
		a.Results[0], a.Results[1] = a.Results[1], a.Results[0]
	}
	if bal[0] <= 0 {
		return
	}
	amt := 1 + cl.rng.Int64N(min(bal[0], bankMaxAmount))
	rf, rt := a.Results[0].Revision, a.Results[1].Revision
	t := kvclient.Txn{
		Compare: []kvclient.TxnCompare{
			kvclient.CompareRevision(from, "==", rf),
			kvclient.CompareRevision(to, "==", rt),
		},
		Success: []kvclient.TxnOp{
			kvclient.PutOp(from, []byte(strconv.FormatInt(bal[0]-amt, 10))),
			kvclient.PutOp(to, []byte(strconv.FormatInt(bal[1]+amt, 10))),
		},
	}
	op := Op{F: "transfer", Key: from + " -> " + to, Value: strconv.FormatInt(amt, 10)}
	w.record(ctx, cl, op, t, func(op *Op, a kvclient.TxnResult) {
		if !a.Succeeded {
			// The compare failed: a concurrent transfer got there first.
			// Nothing was written; a definite failure, like a CAS's 412.
			op.Outcome, op.Err = Fail, "compare failed"
			return
		}
		op.Result = a.Mode
	})
}

// record sends one transaction through the client's node and adds it to
// the history, classified by outcomeOf (a transfer that writes may be
// indeterminate; a read-all, which only reads, never is); ok refines a 200
// answer.
func (w *bankWorkload) record(ctx context.Context, cl *client, op Op, t kvclient.Txn, ok func(*Op, kvclient.TxnResult)) {
	p := cl.addr()
	op.Process, op.Node = cl.process, p.ID
	op.Invoke = cl.h.Now()
	a, err := txnRequest(ctx, p.HTTPAddr, t)
	op.Complete = cl.h.Now()
	op.Outcome, op.Status, op.Err = outcomeOf(err)
	if op.Outcome == OK {
		ok(&op, a)
	}
	if ctx.Err() != nil && op.Outcome != OK {
		op.Err = "run ended: " + op.Err
	}
	cl.h.Add(op)
	if op.Outcome == Info {
		cl.process += cl.procs
	}
	if op.Outcome != OK && (op.Status == 0 || op.Status == http.StatusServiceUnavailable) {
		cl.node++
	}
}

// Check reads every account once more after the cluster healed and checks
// every read-all of the run and the final one.
func (w *bankWorkload) Check(ctx context.Context, c *Cluster, h *History, _ string, timeout time.Duration) CheckResult {
	var final []int64
	var via string
	err := nodeproc.WaitFor(ctx, timeout, func() error {
		var last error
		for _, p := range c.Up() {
			bal, err := w.readAll(ctx, p.HTTPAddr)
			if err == nil {
				final, via = bal, p.ID
				return nil
			}
			last = fmt.Errorf("%s: %w", p.ID, err)
		}
		if last == nil {
			last = errors.New("no node up")
		}
		return last
	})
	return w.judge(h, final, via, err)
}

// judge checks a history's reads and the final balances (read via node
// via, or finalErr): every read and the end sum to the total with no
// negative balance, and at least one transfer committed.
func (w *bankWorkload) judge(h *History, final []int64, via string, finalErr error) CheckResult {
	cr := CheckResult{Checker: "bank (total constant, no negative balance)", Valid: "yes"}
	counts := map[string]int{}
	reads, badReads := 0, 0
	for _, op := range h.Ops() {
		switch op.F {
		case "transfer":
			switch {
			case op.Outcome == OK:
				counts["committed"]++
				if op.Result == "2pc" {
					counts["committed_2pc"]++
				}
			case op.Outcome == Info:
				counts["indeterminate"]++
			case op.Status == http.StatusOK:
				counts["aborted"]++ // compare failed
			case op.Status == http.StatusConflict:
				counts["conflicted"]++
			default:
				counts["failed"]++ // 503, 4xx, never sent: nothing applied
			}
		case "read-all":
			if op.Outcome != OK {
				counts["read_failed"]++
				continue
			}
			reads++
			if msg := w.badRead(op.Value, op.Result, op.Err); msg != "" {
				badReads++
				if badReads <= 5 {
					cr.Problems = append(cr.Problems, fmt.Sprintf("read-all by process %d via %s at %.3fs: %s",
						op.Process, op.Node, float64(op.Complete)/1e9, msg))
				}
			}
		}
	}
	if badReads > 0 {
		cr.Valid = "no"
	}
	cr.Details = map[string]any{
		"accounts": len(w.accounts), "shards_covered": w.shardsCovered(), "expected_total": w.total,
		"committed": counts["committed"], "committed_2pc": counts["committed_2pc"], "aborted": counts["aborted"], "conflicted": counts["conflicted"],
		"failed": counts["failed"], "indeterminate": counts["indeterminate"],
		"reads_ok": reads, "reads_failed": counts["read_failed"], "reads_wrong": badReads,
	}
	if finalErr != nil {
		if cr.Valid == "yes" {
			cr.Valid = "unknown"
		}
		cr.Problems = append(cr.Problems, "final read-all failed: "+finalErr.Error())
		return cr
	}
	sum := sumOf(final)
	cr.Details["final_total"] = sum
	cr.Details["final_balances"] = joinBalances(final)
	if msg := w.badRead(strconv.FormatInt(sum, 10), joinBalances(final), ""); msg != "" {
		cr.Valid = "no"
		cr.Problems = append(cr.Problems, fmt.Sprintf("final read-all via %s: %s", via, msg))
	}
	if counts["committed"] == 0 {
		cr.Valid = "no"
		cr.Problems = append(cr.Problems, "no transfer committed: the workload did not exercise anything")
	}
	return cr
}

func (w *bankWorkload) shardsCovered() int {
	seen := map[string]bool{}
	for _, s := range w.shardOf {
		seen[s] = true
	}
	return len(seen)
}

// badRead says what is wrong with one read-all (total and balances as
// recorded), or "" when nothing is.
func (w *bankWorkload) badRead(total, bals, parseErr string) string {
	if parseErr != "" {
		return parseErr
	}
	var neg []string
	for i, s := range strings.Split(bals, ",") {
		if v, err := strconv.ParseInt(s, 10, 64); err != nil || v < 0 {
			neg = append(neg, fmt.Sprintf("%s=%s", w.accounts[i], s))
		}
	}
	switch {
	case total != strconv.FormatInt(w.total, 10):
		return fmt.Sprintf("total %s, want %d (balances %s)", total, w.total, bals)
	case len(neg) > 0:
		return fmt.Sprintf("negative or unreadable balances %v (balances %s)", neg, bals)
	}
	return ""
}

// readAllTxn is the transaction of a read-all: a get of every account.
func (w *bankWorkload) readAllTxn() kvclient.Txn {
	ops := make([]kvclient.TxnOp, len(w.accounts))
	for i, k := range w.accounts {
		ops[i] = kvclient.GetOp(k)
	}
	return kvclient.Txn{Success: ops}
}

// readAll reads every account in one transaction through addr.
func (w *bankWorkload) readAll(ctx context.Context, addr string) ([]int64, error) {
	a, err := txnRequest(ctx, addr, w.readAllTxn())
	if err != nil {
		return nil, fmt.Errorf("read-all: %w", err)
	}
	return balances(w.accounts, a.Results)
}

// balances parses the get results of the given accounts, in order.
func balances(accounts []string, res []kvclient.TxnOpResult) ([]int64, error) {
	if len(res) != len(accounts) {
		return nil, fmt.Errorf("%d results for %d accounts", len(res), len(accounts))
	}
	out := make([]int64, len(accounts))
	for i, r := range res {
		if r.Key != accounts[i] || !r.Found || r.Value == nil {
			return nil, fmt.Errorf("account %s missing from the answer", accounts[i])
		}
		v, err := strconv.ParseInt(string(r.Value), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("account %s holds %q", accounts[i], r.Value)
		}
		out[i] = v
	}
	return out, nil
}

func sumOf(xs []int64) int64 {
	var s int64
	for _, x := range xs {
		s += x
	}
	return s
}

func joinBalances(xs []int64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatInt(x, 10)
	}
	return strings.Join(parts, ",")
}
