// Package logstore is a node's one durable raft log: the entries and the
// stable state (term, vote) of every raft group on the node, in a single
// bbolt file. Appends that groups make at the same time are committed in one
// transaction, hence one fsync (group commit), instead of one per group.
//
// Each group gets a Store, which implements raft.LogStore and
// raft.StableStore over its own buckets. Close the DB only after every raft
// using one of its Stores has shut down.
package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrClosed is returned by a Store whose DB was closed.
var ErrClosed = errors.New("logstore: closed")

// ErrCorrupt reports a stored entry that does not decode.
var ErrCorrupt = errors.New("logstore: corrupt entry")

var (
	bucketLogs   = []byte("logs")
	bucketStable = []byte("stable")
)

// maxBatch bounds how many appends one transaction carries, so one
// transaction never grows without limit under a flood.
const maxBatch = 256

// DB is the shared file. It owns one goroutine, the committer, which turns
// the appends waiting at any moment into one transaction.
type DB struct {
	db      *bolt.DB
	appends chan *appendReq

	commits, batched atomic.Uint64 // transactions made by the committer, appends they carried

	mu     sync.RWMutex // closed, and the right to send on appends
	closed bool
	done   chan struct{} // closed when the committer has stopped
}

// appendReq is one StoreLogs call waiting for its commit.
type appendReq struct {
	group []byte
	keys  [][]byte
	vals  [][]byte
	err   chan error
}

// Open opens (or creates) the file at path and starts the committer.
func Open(path string) (*DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: time.Second, // another process holding the file fails fast
		// The freelist is rebuilt from the pages at open instead of being
		// written at every commit: less to write for every append.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("logstore: open %s: %w", path, err)
	}
	d := &DB{db: db, appends: make(chan *appendReq, maxBatch), done: make(chan struct{})}
	go d.commitLoop()
	return d, nil
}

// Close stops the committer and closes the file. Calls made afterwards fail
// with ErrClosed.
func (d *DB) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.appends)
	d.mu.Unlock()
	<-d.done
	return d.db.Close()
}

// Stats reports how many transactions the committer made and how many
// appends they carried: their ratio is what group commit saved.
func (d *DB) Stats() (commits, appends uint64) { return d.commits.Load(), d.batched.Load() }

// Group returns the store of the named group, creating its buckets.
func (d *DB) Group(name string) (*Store, error) {
	if name == "" {
		return nil, errors.New("logstore: empty group name")
	}
	g := []byte(name)
	err := d.update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(g)
		if err != nil {
			return err
		}
		if _, err := root.CreateBucketIfNotExists(bucketLogs); err != nil {
			return err
		}
		_, err = root.CreateBucketIfNotExists(bucketStable)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("logstore: group %s: %w", name, err)
	}
	return &Store{d: d, group: g}, nil
}

// DropGroup deletes a group's entries and stable state (a migration that
// starts over does this first).
func (d *DB) DropGroup(name string) error {
	return d.update(func(tx *bolt.Tx) error {
		err := tx.DeleteBucket([]byte(name))
		if errors.Is(err, bolterrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

// update runs fn in a write transaction unless the DB is closed.
func (d *DB) update(fn func(*bolt.Tx) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	return d.db.Update(fn)
}

func (d *DB) view(fn func(*bolt.Tx) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	return d.db.View(fn)
}

// commitLoop takes the first waiting append, then every other one already
// waiting, and commits them together. An append never waits for a timer:
// when the file is idle it commits at once, and while a commit is syncing
// the next appends gather behind it.
func (d *DB) commitLoop() {
	defer close(d.done)
	for first := range d.appends {
		batch := []*appendReq{first}
	gather:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-d.appends:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			default:
				break gather
			}
		}
		err := d.db.Update(func(tx *bolt.Tx) error {
			for _, r := range batch {
				logs, err := logsBucket(tx, r.group)
				if err != nil {
					return err
				}
				for i := range r.keys {
					if err := logs.Put(r.keys[i], r.vals[i]); err != nil {
						return err
					}
				}
			}
			return nil
		})
		d.commits.Add(1)
		d.batched.Add(uint64(len(batch)))
		for _, r := range batch {
			r.err <- err
		}
	}
}

func logsBucket(tx *bolt.Tx, group []byte) (*bolt.Bucket, error) {
	root := tx.Bucket(group)
	if root == nil {
		return nil, fmt.Errorf("logstore: no group %q", group)
	}
	return root.Bucket(bucketLogs), nil
}

func stableBucket(tx *bolt.Tx, group []byte) (*bolt.Bucket, error) {
	root := tx.Bucket(group)
	if root == nil {
		return nil, fmt.Errorf("logstore: no group %q", group)
	}
	return root.Bucket(bucketStable), nil
}

// Store is one group's log and stable state in the shared file.
type Store struct {
	d     *DB
	group []byte
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

func indexKey(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// FirstIndex returns the first stored index, 0 for none.
func (s *Store) FirstIndex() (uint64, error) { return s.edge(true) }

// LastIndex returns the last stored index, 0 for none.
func (s *Store) LastIndex() (uint64, error) { return s.edge(false) }

func (s *Store) edge(first bool) (uint64, error) {
	var idx uint64
	err := s.d.view(func(tx *bolt.Tx) error {
		logs, err := logsBucket(tx, s.group)
		if err != nil {
			return err
		}
		c := logs.Cursor()
		var k []byte
		if first {
			k, _ = c.First()
		} else {
			k, _ = c.Last()
		}
		if len(k) == 8 {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// GetLog reads entry index into log; raft.ErrLogNotFound when absent.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	return s.d.view(func(tx *bolt.Tx) error {
		logs, err := logsBucket(tx, s.group)
		if err != nil {
			return err
		}
		v := logs.Get(indexKey(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		return decodeLog(index, v, log)
	})
}

// StoreLog appends one entry.
func (s *Store) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs appends entries and returns once they are durable. Entries of
// groups appending at the same time share the transaction and its fsync.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	r := &appendReq{group: s.group, keys: make([][]byte, len(logs)), vals: make([][]byte, len(logs)), err: make(chan error, 1)}
	for i, l := range logs {
		r.keys[i] = indexKey(l.Index)
		r.vals[i] = encodeLog(l)
	}
	s.d.mu.RLock()
	if s.d.closed {
		s.d.mu.RUnlock()
		return ErrClosed
	}
	s.d.appends <- r
	s.d.mu.RUnlock()
	return <-r.err
}

// DeleteRange removes entries min..max inclusive.
func (s *Store) DeleteRange(min, max uint64) error {
	return s.d.update(func(tx *bolt.Tx) error {
		logs, err := logsBucket(tx, s.group)
		if err != nil {
			return err
		}
		c := logs.Cursor()
		for k, _ := c.Seek(indexKey(min)); k != nil; k, _ = c.Next() {
			if binary.BigEndian.Uint64(k) > max {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Set stores a stable value (raft's term and vote), durably.
func (s *Store) Set(key, val []byte) error {
	return s.d.update(func(tx *bolt.Tx) error {
		b, err := stableBucket(tx, s.group)
		if err != nil {
			return err
		}
		return b.Put(key, val)
	})
}

// Get reads a stable value; like raft-boltdb, a missing key is an error
// whose text raft recognises ("not found").
func (s *Store) Get(key []byte) ([]byte, error) {
	var out []byte
	err := s.d.view(func(tx *bolt.Tx) error {
		b, err := stableBucket(tx, s.group)
		if err != nil {
			return err
		}
		if v := b.Get(key); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err == nil && out == nil {
		return nil, ErrKeyNotFound
	}
	return out, err
}

// ErrKeyNotFound is Get's answer for a key never set. raft treats an error
// reading "not found" as "no value yet".
var ErrKeyNotFound = errors.New("not found")

// SetUint64 stores a stable integer.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 reads a stable integer; 0 with ErrKeyNotFound when unset.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: stable value %q is %d bytes", ErrCorrupt, key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
