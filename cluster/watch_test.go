package cluster

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/fsm"
)

// TestCursorText: a cursor names every shard once, in shard order, and
// reads back as written; anything else is a bad request.
func TestCursorText(t *testing.T) {
	c, err := ParseCursor("2:95.3,1:120,10:7", 10)
	if err == nil {
		t.Fatalf("a cursor naming 3 of 10 shards was accepted: %v", c)
	}
	c, err = ParseCursor("2:95.3,1:120", 2)
	if err != nil || c["shard-1"] != (fsm.Pos{Rev: 120}) || c["shard-2"] != (fsm.Pos{Rev: 95, Part: 3}) {
		t.Fatalf("parse: %v %v", c, err)
	}
	if s := c.String(); s != "1:120,2:95.3" {
		t.Fatalf("String() = %q", s)
	}
	c = Cursor{"shard-10": {Rev: 1}, "shard-2": {Rev: 2}, "shard-1": {Rev: 3}}
	if s := c.String(); s != "1:3,2:2,10:1" {
		t.Fatalf("String() orders shards by number: %q", s)
	}
	for _, bad := range []string{"", "1:1", "1:1,1:2", "1:1,3:1", "0:1,1:1", "1:x,2:1", "1:1,2", "a:1,2:1", "1:1.0,2:1"} {
		if _, err := ParseCursor(bad, 2); !errors.Is(err, ErrBadRequest) {
			t.Errorf("ParseCursor(%q): %v, want a bad request", bad, err)
		}
	}
}
