package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/logstore"
)

// Log formats, recorded in node.json as log_format. Format 1, implied by
// its absence (0), was one raft-boltdb file per group, <group>/raft.db.
// Format 2 put every group's log in one bbolt file, raft-log.db.
const (
	logFormatBoltShared = 2
	// logFormatWAL: every group's log in one write-ahead log, the
	// directory raft-wal (logstore): appends are written, not B-tree
	// updates, and concurrent ones share one fdatasync.
	logFormatWAL = 3

	currentLogFormat = logFormatWAL
	sharedLogFile    = "raft-wal"
	boltLogFile      = "raft-log.db"
	perGroupLogFile  = "raft.db"
)

// raft's keys in the stable store, copied by the migration.
var stableKeys = [][]byte{[]byte("CurrentTerm"), []byte("LastVoteTerm"), []byte("LastVoteCand")}

// openLogDB opens the node's log, first moving into it the logs of a data
// dir written in an older format. The old files are removed only once
// node.json records the new format, so a migration cut short is simply
// done again from the start on the next start.
func (n *Node) openLogDB(st *nodeState, groups []string) (*logstore.DB, error) {
	if st.LogFormat > currentLogFormat {
		return nil, fmt.Errorf("data dir %s has log format %d, written by a newer raftkv; this build reads up to %d",
			n.cfg.DataDir, st.LogFormat, currentLogFormat)
	}
	db, err := logstore.Open(filepath.Join(n.cfg.DataDir, sharedLogFile))
	if err != nil {
		return nil, err
	}
	if st.LogFormat == currentLogFormat {
		return db, nil
	}
	var old []string
	boltPath := filepath.Join(n.cfg.DataDir, boltLogFile)
	if _, err := os.Stat(boltPath); err == nil && st.LogFormat == logFormatBoltShared {
		moved, err := migrateBoltLog(db, boltPath)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("move the logs of %s into %s: %w", boltLogFile, sharedLogFile, err)
		}
		n.logger.Info("moved the shared bolt log into the write-ahead log", "entries", moved)
		old = append(old, boltPath)
	}
	for _, name := range groups {
		path := filepath.Join(n.cfg.DataDir, name, perGroupLogFile)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		entries, err := migrateGroupLog(db, name, path)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("move the log of %s into %s: %w", name, sharedLogFile, err)
		}
		n.logger.Info("moved a group's log into the write-ahead log", "group", name, "entries", entries)
		old = append(old, path)
	}
	st.LogFormat = currentLogFormat
	if err := writeFileAtomic(filepath.Join(n.cfg.DataDir, "node.json"), st); err != nil {
		db.Close()
		return nil, err
	}
	for _, path := range old {
		if err := os.Remove(path); err != nil {
			n.logger.Warn("could not remove a migrated log file", "path", path, "error", err)
		}
	}
	return db, nil
}

// migrateBoltLog copies every group of a format-2 file (a bucket per group
// holding "logs", keyed by big-endian index, and "stable") into db,
// replacing whatever db held for those groups.
func migrateBoltLog(db *logstore.DB, path string) (int, error) {
	old, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer old.Close()
	copied := 0
	err = old.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, root *bolt.Bucket) error {
			group := string(name)
			if err := db.DropGroup(group); err != nil {
				return err
			}
			s, err := db.Group(group)
			if err != nil {
				return err
			}
			var batch []*raft.Log
			flush := func() error {
				if len(batch) == 0 {
					return nil
				}
				err := s.StoreLogs(batch)
				copied += len(batch)
				batch = batch[:0]
				return err
			}
			if logs := root.Bucket([]byte("logs")); logs != nil {
				err := logs.ForEach(func(k, v []byte) error {
					if len(k) != 8 {
						return fmt.Errorf("group %s: log key of %d bytes", group, len(k))
					}
					l := new(raft.Log)
					if err := logstore.DecodeEntry(binary.BigEndian.Uint64(k), v, l); err != nil {
						return fmt.Errorf("group %s: %w", group, err)
					}
					// A gap (a follower that installed a snapshot ahead of its
					// log) starts a new append.
					if len(batch) > 0 && batch[len(batch)-1].Index+1 != l.Index {
						if err := flush(); err != nil {
							return err
						}
					}
					batch = append(batch, l)
					if len(batch) == 512 {
						return flush()
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			if err := flush(); err != nil {
				return err
			}
			if stable := root.Bucket([]byte("stable")); stable != nil {
				return stable.ForEach(func(k, v []byte) error { return s.Set(k, v) })
			}
			return nil
		})
	})
	return copied, err
}

// migrateGroupLog copies a per-group raft-boltdb file's entries and stable
// values into db, replacing whatever db held for the group.
func migrateGroupLog(db *logstore.DB, name, path string) (int, error) {
	old, err := raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		return 0, err
	}
	defer old.Close()
	if err := db.DropGroup(name); err != nil {
		return 0, err
	}
	s, err := db.Group(name)
	if err != nil {
		return 0, err
	}
	first, err := old.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := old.LastIndex()
	if err != nil {
		return 0, err
	}
	copied := 0
	var batch []*raft.Log
	flush := func() error {
		err := s.StoreLogs(batch)
		copied += len(batch)
		batch = batch[:0]
		return err
	}
	for i := first; first > 0 && i <= last; i++ {
		l := new(raft.Log)
		err := old.GetLog(i, l)
		if errors.Is(err, raft.ErrLogNotFound) {
			// A gap (a follower that installed a snapshot ahead of its
			// log): what follows is a new append.
			if err := flush(); err != nil {
				return copied, err
			}
			continue
		}
		if err != nil {
			return copied, fmt.Errorf("entry %d: %w", i, err)
		}
		batch = append(batch, l)
		if len(batch) == 512 {
			if err := flush(); err != nil {
				return copied, err
			}
		}
	}
	if err := flush(); err != nil {
		return copied, err
	}
	for _, k := range stableKeys {
		v, err := old.Get(k)
		if err != nil {
			continue // never set
		}
		if err := s.Set(k, v); err != nil {
			return copied, err
		}
	}
	return copied, nil
}
