package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Lease is a lease as the cluster reports it (docs/leases.md).
type Lease struct {
	ID  string
	TTL time.Duration
	// Remaining is the time left before the lease expires unless kept
	// alive, by the clock of the node that times it (LeaseInfo and Leases
	// only).
	Remaining time.Duration
	// Keys are the keys attached to the lease, KeyCount how many there
	// are (LeaseInfo only).
	Keys     []string
	KeyCount int
}

type leaseWire struct {
	ID          string   `json:"id"`
	TTLSeconds  float64  `json:"ttl_seconds"`
	RemainingMs int64    `json:"remaining_ms"`
	KeyCount    int      `json:"key_count"`
	Keys        []string `json:"keys"`
}

func (w leaseWire) lease() Lease {
	return Lease{ID: w.ID, TTL: time.Duration(w.TTLSeconds * float64(time.Second)),
		Remaining: time.Duration(w.RemainingMs) * time.Millisecond, Keys: w.Keys, KeyCount: w.KeyCount}
}

// WithLease makes a Put attach the key to the lease id: the key is deleted
// when the lease expires or is revoked. An unknown or expired lease fails
// the Put with ErrNotFound and writes nothing. A Put without WithLease
// detaches the key from any lease.
func WithLease(id string) WriteOption { return func(o *writeOptions) { o.lease = id } }

func leasePath(id string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("%w: empty lease id", ErrBadRequest)
	}
	return "/v1/lease/" + url.PathEscape(id), nil
}

// Grant creates a lease with the given time to live (5 s to 24 h). A
// grant is not resent once delivered: a lost answer leaves at most a lease
// nobody holds, which expires on its own.
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (Lease, error) {
	var w leaseWire
	err := c.sendJSON(ctx, http.MethodPost, "/v1/lease", map[string]string{"ttl": ttl.String()}, false, &w)
	return w.lease(), err
}

// KeepAlive restarts the lease's countdown. An expired or revoked lease
// fails with ErrNotFound.
func (c *Client) KeepAlive(ctx context.Context, id string) (Lease, error) {
	path, err := leasePath(id)
	if err != nil {
		return Lease{}, err
	}
	var w leaseWire
	err = c.sendJSON(ctx, http.MethodPost, path+"/keepalive", nil, true, &w)
	return w.lease(), err
}

// Revoke ends the lease at once and deletes every key attached to it,
// returning how many. An unknown lease fails with ErrNotFound.
func (c *Client) Revoke(ctx context.Context, id string) (int, error) {
	path, err := leasePath(id)
	if err != nil {
		return 0, err
	}
	var out struct {
		Deleted int `json:"deleted"`
	}
	err = c.sendJSON(ctx, http.MethodDelete, path, nil, false, &out)
	return out.Deleted, err
}

// LeaseInfo returns the lease with its remaining time and its keys.
func (c *Client) LeaseInfo(ctx context.Context, id string) (Lease, error) {
	path, err := leasePath(id)
	if err != nil {
		return Lease{}, err
	}
	var w leaseWire
	err = c.getJSON(ctx, path, &w)
	return w.lease(), err
}

// Leases lists every live lease, without their keys.
func (c *Client) Leases(ctx context.Context) ([]Lease, error) {
	var out struct {
		Leases []leaseWire `json:"leases"`
	}
	if err := c.getJSON(ctx, "/v1/lease", &out); err != nil {
		return nil, err
	}
	list := make([]Lease, 0, len(out.Leases))
	for _, w := range out.Leases {
		list = append(list, w.lease())
	}
	return list, nil
}

// ErrLeaseLost is the Err of a LeaseKeeper whose lease expired or was
// revoked, or that could not reach the cluster for a whole time to live.
var ErrLeaseLost = errors.New("raftkv: lease lost")

// LeaseKeeper keeps a lease alive in the background (KeepLeaseAlive).
type LeaseKeeper struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// KeepLeaseAlive sends a keepalive for the lease now and then every third
// of its time to live, until ctx is done, Stop is called or the lease is
// lost. A failed keepalive is retried sooner; once a whole time to live has
// passed since the last one that succeeded, the lease is taken as lost.
// Watch Done to learn of a loss: a lock held under the lease is gone then.
func (c *Client) KeepLeaseAlive(ctx context.Context, id string) (*LeaseKeeper, error) {
	l, err := c.KeepAlive(ctx, id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	k := &LeaseKeeper{cancel: cancel, done: make(chan struct{})}
	go k.run(ctx, c, id, l.TTL)
	return k, nil
}

func (k *LeaseKeeper) run(ctx context.Context, c *Client, id string, ttl time.Duration) {
	defer close(k.done)
	last := time.Now()
	wait := ttl / 3
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		actx, cancel := context.WithTimeout(ctx, ttl/3)
		_, err := c.KeepAlive(actx, id)
		cancel()
		switch {
		case err == nil:
			last, wait = time.Now(), ttl/3
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrNotFound):
			k.fail(fmt.Errorf("%w: %s: %v", ErrLeaseLost, id, err))
			return
		case time.Since(last) >= ttl:
			k.fail(fmt.Errorf("%w: %s: no keepalive got through for %v: %v", ErrLeaseLost, id, ttl, err))
			return
		default:
			wait = ttl / 10
		}
	}
}

func (k *LeaseKeeper) fail(err error) {
	k.mu.Lock()
	k.err = err
	k.mu.Unlock()
}

// Done is closed when the keeper stops: the lease was lost, or Stop was
// called, or the context ended.
func (k *LeaseKeeper) Done() <-chan struct{} { return k.done }

// Err is nil while the keeper runs and after Stop; after a loss it wraps
// ErrLeaseLost.
func (k *LeaseKeeper) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// Stop ends the keepalives (the lease then expires on its own unless
// revoked) and waits for the keeper to finish.
func (k *LeaseKeeper) Stop() {
	k.cancel()
	<-k.done
}
