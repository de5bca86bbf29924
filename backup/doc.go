// Package backup owns raftkv's backup archive: one file holding a
// consistent checkpoint of every raft group of a cluster, a manifest, and a
// SHA-256 checksum per checkpoint. It writes archives (Writer), checks and
// describes them offline (Inspect), and turns one into the data dir of a new
// single-node cluster (Restore), the way etcdutl snapshot restore does.
//
// Layout: a tar stream whose first entry is manifest.json, then (format 2
// on) transactions.json, the decision the backup took for every
// cross-shard transaction its checkpoints leave open, then one entry per
// group, "<group>.snap", each a checkpoint in the snapshot/ format. The
// manifest holds the size and SHA-256 of every other entry.
package backup
