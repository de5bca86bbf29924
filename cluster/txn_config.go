package cluster

import (
	"fmt"
	"sync"
	"time"
)

// TxnConfig tunes transactions. The zero value means DefaultTxnConfig.
type TxnConfig struct {
	// MaxOps caps compares + success ops + failure ops of one transaction.
	MaxOps int
	// MaxBytes caps the sum of key and value bytes of one transaction.
	MaxBytes int
	// Attempts bounds how often a transaction (or a write on a locked key)
	// is retried after meeting another transaction's lock, before the
	// caller gets ErrConflict. Retries back off from 5 ms, doubling to
	// 100 ms, and stop early at the request deadline.
	Attempts int
	// PrepareTimeout is how long after the coordinator started a
	// cross-shard transaction its prepares are still accepted; later ones
	// vote no. The coordinator sends each prepare with the time it has
	// left, which the participant's leader counts down on its own clock.
	// Must be below RecoveryTimeout.
	PrepareTimeout time.Duration
	// RecoveryTimeout is how old a lock or pending record must be before a
	// shard leader finishes its transaction without the coordinator. Age
	// is measured by that leader's own clock, from its prepare or decide
	// entry, or from when it took the shard over (txn_clock.go).
	RecoveryTimeout time.Duration
	// RecoveryInterval is how often each shard leader looks for such locks.
	RecoveryInterval time.Duration
	// Retention is how long a decided, fully resolved record stays readable
	// through GET /v1/txn/{id}, and how long participants remember finished
	// transactions, by the shard leader's own clock; a new leader keeps
	// what it took over for at least Retention. Must be well above
	// RecoveryTimeout.
	Retention time.Duration
}

// DefaultTxnConfig returns the defaults: 128 ops, 1 MiB, 8 attempts,
// prepares accepted for 2 s, recovery after 5 s checked every second,
// records kept for 10 minutes.
func DefaultTxnConfig() TxnConfig {
	return TxnConfig{
		MaxOps:           128,
		MaxBytes:         1 << 20,
		Attempts:         8,
		PrepareTimeout:   2 * time.Second,
		RecoveryTimeout:  5 * time.Second,
		RecoveryInterval: time.Second,
		Retention:        10 * time.Minute,
	}
}

// Validate checks the cross-field rules.
func (c TxnConfig) Validate() error {
	switch {
	case c.MaxOps < 1 || c.MaxBytes < 1 || c.Attempts < 1:
		return fmt.Errorf("%w: transaction limits must be positive", ErrBadRequest)
	case c.PrepareTimeout <= 0 || c.RecoveryTimeout <= c.PrepareTimeout:
		return fmt.Errorf("%w: transaction recovery timeout must exceed the prepare timeout", ErrBadRequest)
	case c.RecoveryInterval <= 0:
		return fmt.Errorf("%w: transaction recovery interval must be positive", ErrBadRequest)
	case c.Retention < 2*c.RecoveryTimeout:
		return fmt.Errorf("%w: transaction retention must be at least twice the recovery timeout", ErrBadRequest)
	}
	return nil
}

// TxnStep names a point in the coordinator's protocol, for TxnHook.
type TxnStep int

// Coordinator steps, in protocol order.
const (
	// StepPrepare: about to send the prepare to Shard.
	StepPrepare TxnStep = iota + 1
	// StepDecide: every prepare voted yes; about to write the decision.
	StepDecide
	// StepResolve: decided; about to resolve Shard.
	StepResolve
	// StepMarkResolved: every other participant resolved; about to mark
	// the record resolved on the primary (Shard).
	StepMarkResolved
	// StepLeasePrepare: a lease revocation (id: the lease) is prepared on
	// its home; about to prepare it on Shard.
	StepLeasePrepare
	// StepLeaseCommit: the revocation is committed on the home; about to
	// commit it on Shard (also: about to drop a failed grant from Shard).
	StepLeaseCommit
	// StepLeaseGrant: about to grant the lease on Shard.
	StepLeaseGrant
)

// TxnHook is called by the coordinator before each step (and by a lease
// revocation before each of its steps on a shard other than the home). A non-nil error
// makes the coordinator stop there as if its process had died
// (fault-injection tests): the step's entry is not proposed, nor is
// anything after it, except that prepares are sent in parallel, so the
// other participants' prepares still go out (they were on the wire when it
// died). The transaction is left to recovery.
type TxnHook func(step TxnStep, id, shard string) error

// txnState is the node's transaction settings.
type txnState struct {
	mu   sync.Mutex
	cfg  TxnConfig
	hook TxnHook
}

// SetTxnConfig replaces the transaction settings.
func (n *Node) SetTxnConfig(c TxnConfig) error {
	if err := c.Validate(); err != nil {
		return err
	}
	n.txn.mu.Lock()
	defer n.txn.mu.Unlock()
	n.txn.cfg = c
	return nil
}

// SetTxnHook installs a coordinator hook (nil removes it).
func (n *Node) SetTxnHook(h TxnHook) {
	n.txn.mu.Lock()
	defer n.txn.mu.Unlock()
	n.txn.hook = h
}

func (n *Node) txnConfig() TxnConfig {
	n.txn.mu.Lock()
	defer n.txn.mu.Unlock()
	if n.txn.cfg.MaxOps == 0 {
		return DefaultTxnConfig()
	}
	return n.txn.cfg
}

// txnStep runs the hook, if any.
func (n *Node) txnStep(step TxnStep, id, shard string) error {
	n.txn.mu.Lock()
	h := n.txn.hook
	n.txn.mu.Unlock()
	if h == nil {
		return nil
	}
	return h(step, id, shard)
}
