package chaos

import (
	"strings"
	"testing"

	kvclient "github.com/raftkv/raftkv/client"
)

func TestBankBadRead(t *testing.T) {
	w := &bankWorkload{accounts: []string{"a", "b", "c"}, total: 300}
	cases := []struct {
		total, bals, err string
		want             string // substring of the complaint; "" = fine
	}{
		{"300", "100,150,50", "", ""},
		{"300", "0,300,0", "", ""},
		{"290", "100,140,50", "", "total 290, want 300"},
		{"300", "-10,210,100", "", "negative"},
		{"", "", "account b missing from the answer", "missing"},
	}
	for _, c := range cases {
		got := w.badRead(c.total, c.bals, c.err)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("badRead(%q, %q, %q) = %q, want %q", c.total, c.bals, c.err, got, c.want)
		}
	}
}

func TestBankBalances(t *testing.T) {
	res := []kvclient.TxnOpResult{{Key: "a", Found: true, Value: []byte("7")}, {Key: "b", Found: true, Value: []byte("-3")}}
	got, err := balances([]string{"a", "b"}, res)
	if err != nil || got[0] != 7 || got[1] != -3 || sumOf(got) != 4 || joinBalances(got) != "7,-3" {
		t.Fatalf("balances = %v, %v", got, err)
	}
	if _, err := balances([]string{"a", "c"}, res); err == nil {
		t.Fatal("a result for the wrong key must be an error")
	}
	if _, err := balances([]string{"a", "b"}, res[:1]); err == nil {
		t.Fatal("a missing result must be an error")
	}
	res[1].Found = false
	if _, err := balances([]string{"a", "b"}, res); err == nil {
		t.Fatal("an absent account must be an error")
	}
}
