package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/raftkv/raftkv/logstore"
)

// Log formats, recorded in node.json as log_format. Format 1, implied by
// its absence (0), was one raft-boltdb file per group, <group>/raft.db.
const (
	// logFormatShared: every group's log in one file, raft-log.db
	// (logstore), so concurrent appends share an fsync.
	logFormatShared = 2

	currentLogFormat = logFormatShared
	sharedLogFile    = "raft-log.db"
	perGroupLogFile  = "raft.db"
)

// raft's keys in the stable store, copied by the migration.
var stableKeys = [][]byte{[]byte("CurrentTerm"), []byte("LastVoteTerm"), []byte("LastVoteCand")}

// openLogDB opens the node's shared log file, first moving the logs of a
// data dir written in the per-group format into it. The old files are
// removed only once node.json records the new format, so a migration cut
// short is simply done again from the start on the next start.
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
		n.logger.Info("moved a group's log into the shared log file", "group", name, "entries", entries)
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
	for i := first; first > 0 && i <= last; i++ {
		l := new(raft.Log)
		if err := old.GetLog(i, l); err != nil {
			return copied, fmt.Errorf("entry %d: %w", i, err)
		}
		batch = append(batch, l)
		if len(batch) == 512 || i == last {
			if err := s.StoreLogs(batch); err != nil {
				return copied, err
			}
			copied += len(batch)
			batch = batch[:0]
		}
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
