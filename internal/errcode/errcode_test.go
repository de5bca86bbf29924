package errcode

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestCodesAreUniqueAndPublicOnesStandForThemselves(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range List() {
		if seen[e.Code] {
			t.Errorf("%s is listed twice", e.Code)
		}
		seen[e.Code] = true
		if e.Status < 400 || e.Status > 599 || e.Meaning == "" {
			t.Errorf("%s: status %d, meaning %q", e.Code, e.Status, e.Meaning)
		}
		if !e.Internal && e.Public != e.Code {
			t.Errorf("public code %s is shown to clients as %s", e.Code, e.Public)
		}
		pub, ok := Lookup(e.Public)
		if !ok || pub.Internal || pub.Status != e.Status {
			t.Errorf("%s is shown as %s (%d), which is not a public code with the same status", e.Code, e.Public, e.Status)
		}
	}
}

func TestStatusWithoutABodyStandsForItsCode(t *testing.T) {
	for _, e := range List() {
		if !e.Internal && ForStatus(e.Status) != e.Code {
			t.Errorf("a bare %d stands for %s, want %s", e.Status, ForStatus(e.Status), e.Code)
		}
	}
	for status, want := range map[int]string{418: BadRequest, 502: Internal} {
		if got := ForStatus(status); got != want {
			t.Errorf("a bare %d stands for %s, want %s", status, got, want)
		}
	}
	if code, status := HTTP("from_a_newer_version"); code != Internal || status != 500 {
		t.Errorf("an unknown code is answered %d %s, want 500 internal", status, code)
	}
}

// TestDocsListEveryPublicCode keeps the error table of docs/api.md true:
// the same codes with the same statuses, in the same order.
func TestDocsListEveryPublicCode(t *testing.T) {
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\s*\\| (\\d{3}) \\| `([a-z_]+)` \\|")
	var documented, listed []string
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, m[1]+" "+m[2])
	}
	for _, e := range List() {
		if !e.Internal {
			listed = append(listed, strconv.Itoa(e.Status)+" "+e.Code)
		}
	}
	if strings.Join(documented, ", ") != strings.Join(listed, ", ") {
		t.Errorf("docs/api.md documents\n  %s\ninternal/errcode lists\n  %s", strings.Join(documented, ", "), strings.Join(listed, ", "))
	}
}
