package cluster

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/logstore"
)

// A read waits for the last entry the state machine will see; an entry it
// cannot read fails the read rather than letting it answer without it.
func TestAnUnreadableLogEntryFailsTheReadInsteadOfSkippingIt(t *testing.T) {
	db, err := logstore.Open(filepath.Join(t.TempDir(), "wal"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := db.Group("shard-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.StoreLogs([]*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogCommand},
		{Index: 2, Term: 1, Type: raft.LogNoop},
	}); err != nil {
		t.Fatal(err)
	}
	g := &group{name: "shard-1", fsm: fsm.New("shard-1"), logs: store}
	if got, err := g.lastAppliableIndex(2); err != nil || got != 1 {
		t.Fatalf("entries 1 (command) and 2 (no-op): wait for %d, %v; want 1", got, err)
	}
	db.Close() // every read of the log fails from now on
	if got, err := g.lastAppliableIndex(2); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with the log unreadable: wait for %d, %v; want ErrUnavailable", got, err)
	}
}

// After a checkpoint was loaded with no log below it (an outage recovery,
// a checkpoint sent by the leader), the entries it covers are not in the
// log: they are in the state machine, and a read waits for nothing there.
func TestEntriesCompactedIntoTheCheckpointAreNotWaitedFor(t *testing.T) {
	db, err := logstore.Open(filepath.Join(t.TempDir(), "wal"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := db.Group("shard-1")
	if err != nil {
		t.Fatal(err)
	}
	// The checkpoint covered 1..27; the new leader's no-op is 28.
	if err := store.StoreLogs([]*raft.Log{{Index: 28, Term: 3, Type: raft.LogNoop}}); err != nil {
		t.Fatal(err)
	}
	g := &group{name: "shard-1", fsm: fsm.New("shard-1"), logs: store}
	if got, err := g.lastAppliableIndex(28); err != nil || got != 0 {
		t.Fatalf("only a no-op above the checkpoint: wait for %d, %v; want nothing (0)", got, err)
	}
}
