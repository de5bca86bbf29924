package fsm

import (
	"context"
	"sync"
	"sync/atomic"
)

// appliedWatch publishes the applied index and wakes waiters when it moves.
// The index is atomic so AppliedIndex never contends with Apply; the channel
// is created only when someone waits, so an idle watch costs one uncontended
// lock per batch.
type appliedWatch struct {
	index atomic.Uint64
	mu    sync.Mutex
	ch    chan struct{} // closed and cleared on every change; nil if no waiter
}

func (w *appliedWatch) load() uint64 { return w.index.Load() }

// set stores a new index and wakes every waiter so it can re-check.
func (w *appliedWatch) set(i uint64) {
	w.index.Store(i)
	w.mu.Lock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	w.mu.Unlock()
}

// wait blocks until the index reaches i or ctx is done. The re-check under
// mu pairs with set's store-then-lock, so a wake-up cannot be lost.
func (w *appliedWatch) wait(ctx context.Context, i uint64) error {
	for {
		if w.load() >= i {
			return nil
		}
		w.mu.Lock()
		if w.load() >= i {
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
