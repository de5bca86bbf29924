package chaos

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// history builds a History from ops.
func history(ops ...Op) *History {
	h := NewHistory()
	for _, op := range ops {
		h.Add(op)
	}
	return h
}

func add(key string, outcome Outcome, status int) Op {
	return Op{F: "add", Key: key, Outcome: outcome, Status: status}
}

func keys(ks ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range ks {
		m[k] = true
	}
	return m
}

// The set checker flags each way a set can go wrong, and passes a history
// that has none of them.
func TestTheSetCheckerFlagsLostPhantomAndUnexpectedAdds(t *testing.T) {
	ops := []Op{
		add("a", OK, http.StatusOK),
		add("b", Fail, http.StatusServiceUnavailable),
		add("c", Info, http.StatusGatewayTimeout),
	}
	cases := []struct {
		name    string
		present map[string]bool
		valid   string
		problem string
	}{
		{"every acknowledged add there, an indeterminate one too", keys("a", "c"), "yes", ""},
		{"every acknowledged add there, the indeterminate one not", keys("a"), "yes", ""},
		{"an acknowledged add lost", keys("c"), "no", "acknowledged adds are missing"},
		{"a failed add present (phantom)", keys("a", "b"), "no", "failed definitely are present"},
		{"a key nobody added", keys("a", "zz"), "no", "nobody added"},
	}
	for _, c := range cases {
		cr := judgeSet(history(ops...), c.present)
		if cr.Valid != c.valid || (c.problem != "" && !strings.Contains(strings.Join(cr.Problems, "; "), c.problem)) {
			t.Errorf("%s: valid %q, problems %v; want %q with %q", c.name, cr.Valid, cr.Problems, c.valid, c.problem)
		}
	}
}

// The bank checker flags a read or a final state whose sum is wrong or
// that shows a negative balance, and a run in which nothing committed.
func TestTheBankCheckerFlagsWrongSumsAndNegativeBalances(t *testing.T) {
	w := &bankWorkload{accounts: []string{"a", "b", "c"}, total: 300}
	transfer := Op{F: "transfer", Outcome: OK, Status: http.StatusOK, Result: "2pc"}
	read := func(total, bals string) Op {
		return Op{F: "read-all", Outcome: OK, Status: http.StatusOK, Value: total, Result: bals}
	}
	good := []int64{100, 150, 50}
	cases := []struct {
		name     string
		ops      []Op
		final    []int64
		finalErr error
		valid    string
		problem  string
	}{
		{"consistent reads and end", []Op{transfer, read("300", "100,100,100")}, good, nil, "yes", ""},
		{"a read with the wrong sum", []Op{transfer, read("290", "100,90,100")}, good, nil, "no", "want 300"},
		{"a read with a negative balance", []Op{transfer, read("300", "-10,210,100")}, good, nil, "no", "negative"},
		{"an end state with the wrong sum", []Op{transfer}, []int64{100, 150, 65}, nil, "no", "want 300"},
		{"no transfer committed", []Op{read("300", "100,100,100")}, good, nil, "no", "no transfer committed"},
		{"the final read failed", []Op{transfer}, nil, errors.New("no node up"), "unknown", "final read-all failed"},
	}
	for _, c := range cases {
		cr := w.judge(history(c.ops...), c.final, "n1", c.finalErr)
		if cr.Valid != c.valid || (c.problem != "" && !strings.Contains(strings.Join(cr.Problems, "; "), c.problem)) {
			t.Errorf("%s: valid %q, problems %v; want %q with %q", c.name, cr.Valid, cr.Problems, c.valid, c.problem)
		}
	}
}
