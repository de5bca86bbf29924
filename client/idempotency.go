package client

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"
)

// Exactly-once writes. Every Put, Delete and writing Txn is sent with an
// Idempotency-Key header: the caller's (WithIdempotencyKey), or a random
// one the client makes for that call. The cluster remembers the key and
// the write's first answer for its --idempotency-window (10 minutes by
// default), so when the outcome of a send is unknown (a 504, a connection
// cut after sending) the client sends the write again with the same key,
// and gets the first answer if the write had been applied: each call
// applies its write at most once, and a 2xx answer means exactly once.
//
// The client resends only to a cluster that honours keys: one whose answer
// to the write, or to an earlier keyed write of this client, echoed the
// key. A node of a build from before keys ignores the header, and a resend
// there could apply the write twice; the outcome is then reported as
// indeterminate, as before. During a rolling upgrade from such a build,
// turn resends off (WithIdempotentRetry(0)): that the cluster honours keys
// is learned once per client, not per node.
//
// Resends stop after the retry budget (WithIdempotentRetry, 1 minute by
// default), which must stay well below the cluster's window: past the
// window a resend would be a new write. When the budget or the caller's
// context runs out first, the error is indeterminate still; the caller can
// resend later with WithIdempotencyKey and the same key, within the
// window.

// DefaultIdempotentRetry is how long a client keeps resending a write
// whose outcome is unknown.
const DefaultIdempotentRetry = time.Minute

const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed"
)

// WithIdempotencyKey names the logical write of a Put, Delete or Txn: the
// cluster applies a write under one key once and answers every retry with
// its first answer (for --idempotency-window). A key is 1..255 bytes of
// printable ASCII without spaces; use a new one for every new write.
// Reusing one for a different request fails with ErrIdempotencyKeyReused.
// A transaction of gets only is a read and is sent without it.
func WithIdempotencyKey(key string) WriteOption {
	return func(o *writeOptions) { o.idemKey = key }
}

// WithIdempotentRetry sets how long the client keeps resending a write
// whose outcome is unknown, under its idempotency key (default
// DefaultIdempotentRetry). Zero turns both the resends and the keys the
// client makes off: writes are then sent once, and only with the caller's
// own key (WithIdempotencyKey).
func WithIdempotentRetry(budget time.Duration) Option {
	return func(o *options) { o.idemRetry, o.idemRetrySet = budget, true }
}

// NewIdempotencyKey returns a random key: 128 bits, so two writes never
// share one. It is the key the client makes for a write given none; a
// caller that wants to resend a write itself later (after ErrIndeterminate)
// makes one and passes it with WithIdempotencyKey.
func NewIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b)
	return "rk-" + hex.EncodeToString(b)
}

// doWrite sends the write r under an idempotency key (key, or one of the
// client's own) and resends it while its outcome is unknown.
func (c *Client) doWrite(ctx context.Context, r request, key string) (*response, error) {
	if key == "" && c.idemRetry > 0 {
		key = NewIdempotencyKey()
	}
	if key == "" {
		return c.do(ctx, r)
	}
	h := http.Header{}
	for k, vs := range r.header {
		h[k] = vs
	}
	h.Set(headerIdempotencyKey, key)
	r.header = h

	resp, err := c.do(ctx, r)
	if err == nil || c.idemRetry <= 0 || !errors.Is(err, ErrIndeterminate) {
		c.noteHonoured(resp, err, key)
		return resp, err
	}
	unknown := err // the latest answer that left the outcome open
	c.noteHonoured(nil, err, key)
	deadline := time.Now().Add(c.idemRetry)
	wait := 50 * time.Millisecond
	for c.honoured.Load() && time.Now().Before(deadline) {
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, unknown
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
		resp, err = c.do(ctx, r)
		c.noteHonoured(resp, err, key)
		switch {
		case err == nil, settles(err):
			return resp, err
		case errors.Is(err, ErrIndeterminate):
			unknown = err
		}
		// Anything else (503, 429, a refused connection, a lock in the
		// way) says only that this resend did not happen: the first send
		// may still have. Try again.
	}
	return nil, unknown
}

// settles reports whether an answer to a resent keyed write is the
// write's own verdict: a failed precondition (remembered, or the write
// evaluated now because the first send never applied) or the key naming
// another request.
func settles(err error) bool {
	return errors.Is(err, ErrPrecondition) || errors.Is(err, ErrIdempotencyKeyReused)
}

// noteHonoured records that the cluster honours keys when an answer to a
// keyed write echoed its key.
func (c *Client) noteHonoured(resp *response, err error, key string) {
	var h http.Header
	var apiErr *APIError
	switch {
	case resp != nil:
		h = resp.header
	case errors.As(err, &apiErr):
		h = apiErr.header
	}
	if h != nil && h.Get(headerIdempotencyKey) == key {
		c.honoured.Store(true)
	}
}

func replayedAnswer(resp *response) bool { return resp.header.Get(headerReplayed) == "true" }
