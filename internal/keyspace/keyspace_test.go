package keyspace

import "testing"

// TestShardForIsStable pins the mapping: it is part of the on-disk format.
func TestShardForIsStable(t *testing.T) {
	for _, tc := range []struct {
		key    string
		shards int
		want   string
	}{
		{"", 4, "shard-2"},
		{"a", 7, "shard-6"},
		{"accounts/alice", 4, "shard-3"},
		{"greeting", 7, "shard-2"},
		{"chaos/1/k-0", 7, "shard-7"},
		{"anything", 1, "shard-1"},
	} {
		if got := ShardFor(tc.key, tc.shards); got != tc.want {
			t.Errorf("ShardFor(%q, %d) = %s, want %s", tc.key, tc.shards, got, tc.want)
		}
	}
}
