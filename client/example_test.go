package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/raftkvtest"
)

// The examples run against a real three-node cluster with two shards, in
// this process (raftkvtest), started by the first example that needs it
// and stopped after every test and example has run.

var example struct {
	once      sync.Once
	tb        *exampleTB
	endpoints []string
}

// exampleEndpoints returns the HTTP addresses of the examples' cluster.
func exampleEndpoints() []string {
	example.once.Do(func() {
		example.tb = &exampleTB{}
		c := raftkvtest.NewCluster(example.tb, 3, 2)
		for _, n := range c.Nodes {
			example.endpoints = append(example.endpoints, n.HTTPAddr)
		}
	})
	return example.endpoints
}

func TestMain(m *testing.M) {
	code := m.Run()
	if example.tb != nil {
		example.tb.cleanup()
	}
	os.Exit(code)
}

// exampleTB is the testing.TB an example's cluster runs under: examples
// have no *testing.T. It implements what raftkvtest calls; anything else
// panics on the nil embedded interface.
type exampleTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
}

func (e *exampleTB) Helper()             {}
func (e *exampleTB) Name() string        { return "examples" }
func (e *exampleTB) Log(...any)          {}
func (e *exampleTB) Logf(string, ...any) {}
func (e *exampleTB) Fatal(args ...any)   { log.Panic(args...) }
func (e *exampleTB) Fatalf(f string, args ...any) {
	log.Panicf(f, args...)
}
func (e *exampleTB) Errorf(f string, args ...any) { log.Panicf(f, args...) }
func (e *exampleTB) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}
func (e *exampleTB) TempDir() string {
	d, err := os.MkdirTemp("", "raftkv-example-")
	if err != nil {
		log.Panic(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dirs = append(e.dirs, d)
	return d
}

// cleanup runs the cleanups, last registered first, then removes the
// temporary directories.
func (e *exampleTB) cleanup() {
	e.mu.Lock()
	fs, dirs := e.cleanups, e.dirs
	e.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

// Put a key and read it back. Reads are linearizable by default.
func Example() {
	c := client.New(exampleEndpoints(), client.WithTimeout(5*time.Second))
	ctx := context.Background()

	if _, err := c.Put(ctx, "greeting", []byte("hello")); err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s = %s (version %d)\n", v.Key, v.Value, v.Version)

	if _, err := c.Get(ctx, "no-such-key"); errors.Is(err, client.ErrNotFound) {
		fmt.Println("no-such-key is absent")
	}
	// Output:
	// greeting = hello (version 1)
	// no-such-key is absent
}

// Conditional writes: create a key only if it is absent, then change it
// only if nobody else did since it was read (compare and swap on the
// revision).
func ExampleClient_Put_conditional() {
	c := client.New(exampleEndpoints(), client.WithTimeout(5*time.Second))
	ctx := context.Background()

	created, err := c.Put(ctx, "lock", []byte("owner-1"), client.IfAbsent())
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Put(ctx, "lock", []byte("owner-2"), client.IfAbsent())
	fmt.Println("second create refused:", errors.Is(err, client.ErrPrecondition))

	// The swap succeeds on the revision it read...
	if _, err := c.Put(ctx, "lock", []byte("owner-1, renewed"), client.IfMatch(created.Revision)); err != nil {
		log.Fatal(err)
	}
	// ...and a second one on the same, now stale, revision fails; the
	// error carries the key's current revision, to read and retry.
	_, err = c.Put(ctx, "lock", []byte("owner-3"), client.IfMatch(created.Revision))
	var apiErr *client.APIError
	if errors.As(err, &apiErr) && errors.Is(err, client.ErrPrecondition) {
		fmt.Println("stale swap refused; the key has moved on:", apiErr.CurrentRevision > created.Revision)
	}
	// Output:
	// second create refused: true
	// stale swap refused; the key has moved on: true
}

// A transfer between two accounts in different shards: one atomic
// transaction, conditional on the balance read before, committed by
// two-phase commit.
func ExampleClient_Txn() {
	c := client.New(exampleEndpoints(), client.WithTimeout(5*time.Second))
	ctx := context.Background()
	for _, k := range []string{"alice", "bob"} {
		if _, err := c.Put(ctx, k, []byte("100")); err != nil {
			log.Fatal(err)
		}
	}

	res, err := c.Txn(ctx, client.Txn{
		Compare: []client.TxnCompare{client.CompareValue("alice", "==", []byte("100"))},
		Success: []client.TxnOp{
			client.PutOp("alice", []byte("70")),
			client.PutOp("bob", []byte("130")),
		},
		Failure: []client.TxnOp{client.GetOp("alice")},
	})
	switch {
	case errors.Is(err, client.ErrIndeterminate):
		// Sent, but the answer was lost: it may or may not have
		// committed. Read the keys before trying again.
		log.Fatal(err)
	case err != nil:
		// Nothing was applied (a conflict with another transaction, no
		// leader, a malformed transaction...).
		log.Fatal(err)
	}
	fmt.Println("succeeded:", res.Succeeded, "mode:", res.Mode, "shards:", len(res.Shards))

	// A transaction of gets reads both accounts at one point in time.
	read, err := c.Txn(ctx, client.Txn{Success: []client.TxnOp{client.GetOp("alice"), client.GetOp("bob")}})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range read.Results {
		fmt.Printf("%s: %s\n", r.Key, r.Value)
	}
	// Output:
	// succeeded: true mode: 2pc shards: 2
	// alice: 70
	// bob: 130
}

// Finding out what became of a cross-shard transaction. An error for
// which errors.Is(err, client.ErrIndeterminate) holds means the
// transaction was sent and may or may not have committed: the cluster
// finishes it either way (recovery decides a stalled one within seconds).
// Its record, kept for a while after it resolved, says how it ended; the
// answer names it (TxnResult.ID). Without the id, read the keys.
func ExampleClient_TxnRecord() {
	c := client.New(exampleEndpoints(), client.WithTimeout(5*time.Second))
	ctx := context.Background()

	t := client.Txn{Success: []client.TxnOp{
		client.PutOp("carol", []byte("on shard-1")),
		client.PutOp("dave", []byte("on shard-2")),
	}}
	res, err := c.Txn(ctx, t)
	if errors.Is(err, client.ErrIndeterminate) {
		// The id is not known: read a key the transaction writes.
		v, gerr := c.Get(ctx, "carol")
		fmt.Println("committed:", gerr == nil && string(v.Value) == "on shard-1")
		return
	}
	if err != nil {
		log.Fatal(err)
	}

	rec, err := c.TxnRecord(ctx, res.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", rec.State, "succeeded:", rec.Succeeded, "participants:", len(rec.Participants))

	_, err = c.TxnRecord(ctx, "shard-1.0000000000000000")
	fmt.Println("unknown id:", errors.Is(err, client.ErrNotFound))
	// Output:
	// state: committed succeeded: true participants: 2
	// unknown id: true
}

// A consistent backup of the whole cluster, saved to a file that appears
// only once it is complete and verified.
func ExampleClient_SaveBackup() {
	c := client.New(exampleEndpoints(), client.WithTimeout(2*time.Minute))
	dir, err := os.MkdirTemp("", "raftkv-backup-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	rep, err := c.SaveBackup(context.Background(), filepath.Join(dir, "backup.tar"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("verified:", rep.OK)
	for _, g := range rep.Groups {
		fmt.Println(g.Name, g.ChecksumOK)
	}
	// Output:
	// verified: true
	// meta true
	// shard-1 true
	// shard-2 true
}

// The cluster as one node sees it: the nodes, their stage, and each raft
// group with its leader.
func ExampleClient_Cluster() {
	c := client.New(exampleEndpoints(), client.WithTimeout(5*time.Second))
	st, err := c.Cluster(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("shards:", st.Shards)
	var nodes []string
	for _, n := range st.Nodes {
		nodes = append(nodes, fmt.Sprintf("%s %s reachable=%v", n.ID, n.Stage, n.Reachable != nil && *n.Reachable))
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		fmt.Println(n)
	}
	for _, g := range st.Groups {
		fmt.Println(g.Name, "has a leader:", g.Leader != "", "voters:", len(g.Voters))
	}
	// Output:
	// shards: 2
	// node1 voter reachable=true
	// node2 voter reachable=true
	// node3 voter reachable=true
	// meta has a leader: true voters: 3
	// shard-1 has a leader: true voters: 3
	// shard-2 has a leader: true voters: 3
}

// What an error says: whether the server answered (and with which code),
// whether the request was sent at all, and whether a write may have
// happened.
func ExampleAPIError() {
	ctx := context.Background()
	c := client.New(exampleEndpoints(), client.WithTimeout(5*time.Second))
	_, err := c.Get(ctx, "missing")
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.Status, apiErr.Code, "sent:", client.Sent(err))
	}

	// Nothing listens on port 1: the write never left, so it certainly
	// did not happen and may be retried anywhere.
	down := client.New([]string{"127.0.0.1:1"})
	_, err = down.Put(ctx, "k", []byte("v"))
	fmt.Println("sent:", client.Sent(err), "indeterminate:", errors.Is(err, client.ErrIndeterminate),
		"unavailable:", errors.Is(err, client.ErrUnavailable))
	// Output:
	// 404 not_found sent: true
	// sent: false indeterminate: false unavailable: true
}
