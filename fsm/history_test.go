package fsm

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// changeLine is a change in a form that is easy to compare.
func changeLine(c Change) string {
	if c.Kind == ChangePut {
		return fmt.Sprintf("%d.%d put %s=%s", c.Revision, c.Seq, c.KV.Key, c.KV.Value)
	}
	return fmt.Sprintf("%d.%d delete %s", c.Revision, c.Seq, c.KV.Key)
}

func changeLines(t *testing.T, f *FSM, prefix string, from Pos) []string {
	t.Helper()
	page, err := f.Changes(prefix, from, 0, 0)
	if err != nil {
		t.Fatalf("Changes(%q, %v): %v", prefix, from, err)
	}
	out := []string{}
	for _, c := range page.Changes {
		out = append(out, changeLine(c))
	}
	return out
}

// TestEveryKeyChangeIsInTheHistory: puts, deletes, prefix deletes, single
// shard transactions and resolved two-phase parts all leave their changes,
// in apply order; failed preconditions, locked writes and deletes of
// absent keys leave none.
func TestEveryKeyChangeIsInTheHistory(t *testing.T) {
	h := newHarness(t)
	h.put("a/1", "x")                                                                                // 1
	h.put("a/2", "y")                                                                                // 2
	h.apply(EncodeDelete("a/1", Condition{}))                                                        // 3
	h.apply(EncodeDelete("a/nope", Condition{}))                                                     // 4: absent, no change
	h.apply(EncodePut("a/2", []byte("z"), Condition{Kind: CondAbsent}))                              // 5: fails
	h.txn(CommandTxn, TxnCmd{Body: Txn{Success: []Op{putOp("a/3", "t"), delOp("a/2"), get("a/3")}}}) // 6
	h.put("b/1", "other")                                                                            // 7
	h.put("a/4", "w")                                                                                // 8
	h.apply(EncodeDeletePrefix("a/"))                                                                // 9: a/3, a/4
	p := prepare("t1", "shard-1", 1000, Txn{Success: []Op{putOp("a/5", "2pc")}})
	h.txn(CommandTxnPrepare, p)                                    // 10: staged, no change
	if r := h.put("a/5", "locked"); !errors.Is(r.Err, ErrLocked) { // 11
		t.Fatalf("put on locked key: %+v", r)
	}
	h.txn(CommandTxnDecide, TxnCmd{ID: "t1", Outcome: OutcomeSuccess, Now: 2000, Participants: []string{"shard-1", "shard-x"}}) // 12

	want := []string{"1.0 put a/1=x", "2.0 put a/2=y", "3.0 delete a/1", "6.0 put a/3=t", "6.1 delete a/2",
		"8.0 put a/4=w", "9.0 delete a/3", "9.1 delete a/4", "12.0 put a/5=2pc"}
	if got := changeLines(t, h.f, "a/", Pos{}); !reflect.DeepEqual(got, want) {
		t.Fatalf("changes under a/:\n got %q\nwant %q", got, want)
	}
	if got := changeLines(t, h.f, "b/", Pos{}); !reflect.DeepEqual(got, []string{"7.0 put b/1=other"}) {
		t.Fatalf("changes under b/: %q", got)
	}
	// Resuming inside an entry skips exactly the changes read of it.
	if got := changeLines(t, h.f, "a/", Pos{Rev: 9, Part: 1}); !reflect.DeepEqual(got, []string{"9.1 delete a/4", "12.0 put a/5=2pc"}) {
		t.Fatalf("from 9.1: %q", got)
	}
	if got := changeLines(t, h.f, "a/", Pos{Rev: 9}); !reflect.DeepEqual(got, []string{"12.0 put a/5=2pc"}) {
		t.Fatalf("from 9: %q", got)
	}
	page, _ := h.f.Changes("a/", Pos{}, 0, 0)
	cs, through := page.Changes, page.Through
	if through != 12 || page.More || !cs[len(cs)-1].Last || cs[6].Last || !cs[7].Last {
		t.Fatalf("through %d, last flags %+v", through, cs)
	}
	if p := After(cs[6]); p != (Pos{Rev: 9, Part: 1}) {
		t.Fatalf("After(9.0 of 2) = %v", p)
	}
	// Pages cut by count or by bytes say so, and keep at least one change.
	if page, _ := h.f.Changes("a/", Pos{}, 2, 0); len(page.Changes) != 2 || !page.More {
		t.Fatalf("limit 2: %d changes, more %v", len(page.Changes), page.More)
	}
	if page, _ := h.f.Changes("a/", Pos{}, 0, 1); len(page.Changes) != 1 || !page.More {
		t.Fatalf("1 byte: %d changes, more %v", len(page.Changes), page.More)
	}
}

func TestPositionText(t *testing.T) {
	for _, s := range []string{"0", "120", "120.2"} {
		p, err := ParsePos(s)
		if err != nil || p.String() != s {
			t.Errorf("ParsePos(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "x", "-1", "12.0", "0.1", "1.x", "1.2.3"} {
		if _, err := ParsePos(s); err == nil {
			t.Errorf("ParsePos(%q) accepted", s)
		}
	}
}

// TestHistoryIsBoundedAndSaysCompacted: past the limits whole entries are
// dropped, and a position before them is refused with the oldest
// revision still held.
func TestHistoryIsBoundedAndSaysCompacted(t *testing.T) {
	h := newHarness(t)
	h.f.SetHistoryLimits(HistoryLimits{Changes: 3})
	for i := range 5 {
		h.put(fmt.Sprintf("k%d", i), "v") // 1..5
	}
	h.txn(CommandTxn, TxnCmd{Body: Txn{Success: []Op{putOp("t1", "a"), putOp("t2", "b"), putOp("t3", "c"), putOp("t4", "d")}}}) // 6
	// The newest entry is kept whole even though it alone passes the limit.
	if got := changeLines(t, h.f, "", Pos{Rev: 5}); len(got) != 4 {
		t.Fatalf("from 5: %q", got)
	}
	_, err := h.f.Changes("", Pos{Rev: 4}, 0, 0)
	var ce *CompactedError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) || ce.Oldest != 6 {
		t.Fatalf("from 4: %v", err)
	}
	if h.f.HistoryStart() != 6 {
		t.Fatalf("HistoryStart %d", h.f.HistoryStart())
	}
	if changed, _ := h.f.Changed("k0", true, 4); !changed {
		t.Fatal("Changed before the history's start must answer true (wake, never miss)")
	}
}

// TestHistoryKeepsItsOrderAsItWrapsAndShrinks: the history is a ring
// that stops growing at its limits; changes read back in apply order
// however often it has wrapped, an entry of many changes that wraps with
// it stays whole, and the room such an entry took is given back once the
// limits drop it.
func TestHistoryKeepsItsOrderAsItWrapsAndShrinks(t *testing.T) {
	h := newHarness(t)
	h.f.SetHistoryLimits(HistoryLimits{Changes: 50})
	rev := uint64(0)
	put := func(key string) {
		rev++
		h.put(key, fmt.Sprint(rev))
	}
	for i := range 1000 { // wraps a ring of at most 64 many times
		put(fmt.Sprintf("k%d", i%7))
	}
	want := []string{}
	for r := rev - 49; r <= rev; r++ {
		want = append(want, fmt.Sprintf("%d.0 put k%d=%d", r, (r-1)%7, r))
	}
	if got := changeLines(t, h.f, "", Pos{Rev: rev - 50}); !reflect.DeepEqual(got, want) {
		t.Fatalf("after 1000 puts:\n got %q\nwant %q", got, want)
	}
	if n := len(h.f.st.hist.ring); n != 64 {
		t.Fatalf("ring of %d changes for a limit of 50", n)
	}

	// One transaction of 300 puts: kept whole, in order, wrapping.
	var ops []Op
	for i := range 300 {
		ops = append(ops, putOp(fmt.Sprintf("t%03d", i), "x"))
	}
	h.txn(CommandTxn, TxnCmd{Body: Txn{Success: ops}})
	rev++
	got := changeLines(t, h.f, "", Pos{Rev: rev - 1})
	if len(got) != 300 || got[0] != fmt.Sprintf("%d.0 put t000=x", rev) || got[299] != fmt.Sprintf("%d.299 put t299=x", rev) {
		t.Fatalf("the transaction's changes: %d, first %q, last %q", len(got), got[0], got[len(got)-1])
	}
	for range 3 {
		put("after")
	}
	if n := len(h.f.st.hist.ring); n > 2*64 {
		t.Fatalf("ring of %d changes once the transaction was dropped, for a limit of 50", n)
	}
	if got := changeLines(t, h.f, "", Pos{Rev: rev - 3}); len(got) != 3 || got[2] != fmt.Sprintf("%d.0 put after=%d", rev, rev) {
		t.Fatalf("after the transaction: %q", got)
	}
}

// TestRestoreStartsTheHistoryAtTheCheckpoint: the history is not part of
// a checkpoint, so after a restore every position before its index is
// compacted and every later change is recorded.
func TestRestoreStartsTheHistoryAtTheCheckpoint(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1")
	h.put("b", "2")
	snap := persist(t, h.f)
	f := New("shard-1")
	if err := restore(f, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Changes("", Pos{Rev: 1}, 0, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("from 1 after restore at 2: %v", err)
	}
	f.Apply(commandLog(3, EncodePut("c", []byte("3"), Condition{})))
	if got := changeLines(t, f, "", Pos{Rev: 2}); !reflect.DeepEqual(got, []string{"3.0 put c=3"}) {
		t.Fatalf("after restore: %q", got)
	}
	// A fork (a backup's copy) keeps no history and never feeds the live one.
	fk := f.Fork()
	fk.Apply(commandLog(4, EncodePut("d", []byte("4"), Condition{})))
	if got := changeLines(t, f, "", Pos{Rev: 2}); len(got) != 1 {
		t.Fatalf("fork fed the live history: %q", got)
	}
}

// TestChangedAnswersBlockingQueries covers the single-key and prefix
// wake-up checks.
func TestChangedAnswersBlockingQueries(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1")                         // 1
	h.put("p/x", "1")                       // 2
	h.apply(EncodeDelete("a", Condition{})) // 3
	cases := []struct {
		key    string
		prefix bool
		rev    uint64
		want   bool
	}{
		{"a", false, 0, true},
		{"a", false, 2, true}, // deleted at 3
		{"a", false, 3, false},
		{"p/x", false, 2, false},
		{"p/x", false, 1, true},
		{"p/", true, 1, true},
		{"p/", true, 2, false},
		{"q/", true, 0, false},
		{"missing", false, 0, false},
	}
	for _, c := range cases {
		if got, applied := h.f.Changed(c.key, c.prefix, c.rev); got != c.want || applied != 3 {
			t.Errorf("Changed(%q, %v, %d) = %v, %d; want %v, 3", c.key, c.prefix, c.rev, got, applied, c.want)
		}
	}
}

// TestHistoryIsDeterministic: two replicas fed the same entries hold the
// same changes.
func TestHistoryIsDeterministic(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	for _, h := range []*harness{a, b} {
		h.put("x", "1")
		h.txn(CommandTxn, TxnCmd{Body: Txn{Success: []Op{putOp("x", "2"), putOp("y", "3")}}})
		h.apply(EncodeDeletePrefix(""))
	}
	if ga, gb := changeLines(t, a.f, "", Pos{}), changeLines(t, b.f, "", Pos{}); !reflect.DeepEqual(ga, gb) || len(ga) != 5 {
		t.Fatalf("replicas differ: %q vs %q", ga, gb)
	}
}
