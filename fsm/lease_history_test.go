package fsm

import (
	"reflect"
	"testing"
)

// TestALeasesKeysAreInTheHistory: keys put with a lease are changes like
// any other, and the revocation that deletes them (an expiry is one) leaves
// a delete for each, in the commit's entry, so watches see a lease end.
func TestALeasesKeysAreInTheHistory(t *testing.T) {
	h := newHarness(t)
	h.apply(EncodeLeaseGrant("shard-1.L", leaseTTL))         // 1: no key change
	h.leasePut("lock/a", "me", "shard-1.L")                  // 2
	h.leasePut("lock/b", "me", "shard-1.L")                  // 3
	h.apply(EncodeLeaseRevoke("shard-1.L", LeasePrepare, 1)) // 4: locks, no change
	h.apply(EncodeLeaseRevoke("shard-1.L", LeaseCommit, 0))  // 5: both deleted
	want := []string{"2.0 put lock/a=me", "3.0 put lock/b=me", "5.0 delete lock/a", "5.1 delete lock/b"}
	if got := changeLines(t, h.f, "lock/", Pos{}); !reflect.DeepEqual(got, want) {
		t.Fatalf("changes under lock/:\n got %q\nwant %q", got, want)
	}
}
