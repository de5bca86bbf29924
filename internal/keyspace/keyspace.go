// Package keyspace maps keys to shards. It is a leaf (standard library
// only), so that tools which need to aim keys at a shard, such as the chaos
// workloads, need not link the cluster package and raft for a hash.
package keyspace

import (
	"hash/fnv"
	"strconv"
)

// ShardFor returns the name of the shard that owns key: shard-(1 + h mod N),
// where h is the 32-bit FNV-1a hash of the key's bytes. This mapping is part
// of the on-disk format: changing it would strand every stored key.
func ShardFor(key string, shards int) string {
	h := fnv.New32a()
	h.Write([]byte(key))
	return "shard-" + strconv.FormatUint(uint64(1+h.Sum32()%uint32(shards)), 10)
}
