// Package applied publishes how far a state machine has applied its log
// and lets readers wait for an index. Both raftkv state machines (fsm and
// registry) use it.
package applied

import (
	"context"
	"sync"
	"sync/atomic"
)

// Watch publishes the applied index and wakes waiters when it moves.
// The index is atomic so AppliedIndex never contends with Apply; the channel
// is created only when someone waits, so an idle watch costs one uncontended
// lock per batch.
type Watch struct {
	index atomic.Uint64
	mu    sync.Mutex
	ch    chan struct{} // closed and cleared on every change; nil if no waiter
}

// Load returns the applied index.
func (w *Watch) Load() uint64 { return w.index.Load() }

// Set stores a new index and wakes every waiter so it can re-check.
func (w *Watch) Set(i uint64) {
	w.index.Store(i)
	w.mu.Lock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	w.mu.Unlock()
}

// Wait blocks until the index reaches i or ctx is done. The re-check under
// mu pairs with Set's store-then-lock, so a wake-up cannot be lost.
func (w *Watch) Wait(ctx context.Context, i uint64) error {
	for {
		if w.Load() >= i {
			return nil
		}
		w.mu.Lock()
		if w.Load() >= i {
			w.mu.Unlock()
			return nil
		}
		if w.ch == nil {
			w.ch = make(chan struct{})
		}
		ch := w.ch
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
