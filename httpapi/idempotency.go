package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/raftkv/raftkv/cluster"
)

// Exactly-once writes over HTTP: PUT and DELETE of a key and POST /v1/txn
// take an Idempotency-Key header (docs/api.md, "Exactly-once writes").
const (
	// headerIdempotencyKey names a logical write; a retry with the same key
	// gets the first answer instead of being applied again. The answer to a
	// request that carried one echoes it, which tells a client that this
	// node honours keys.
	headerIdempotencyKey = "Idempotency-Key"
	// headerReplayed marks a 2xx answer that is a remembered first answer.
	headerReplayed = "Idempotent-Replayed"
)

// idempotencyKey puts the request's Idempotency-Key, if it has one, into
// ctx, and echoes it on the answer. A bad key is a 400 and nothing is
// proposed.
func idempotencyKey(ctx context.Context, w http.ResponseWriter, r *http.Request) (context.Context, error) {
	vs := r.Header.Values(headerIdempotencyKey)
	switch len(vs) {
	case 0:
		return ctx, nil
	case 1:
	default:
		return ctx, fmt.Errorf("%w: %d %s headers; send one", cluster.ErrBadRequest, len(vs), headerIdempotencyKey)
	}
	if err := cluster.ValidateIdempotencyKey(vs[0]); err != nil {
		return ctx, fmt.Errorf("%s: %w", headerIdempotencyKey, err)
	}
	w.Header().Set(headerIdempotencyKey, vs[0])
	return cluster.WithIdempotencyKey(ctx, vs[0]), nil
}

// markReplayed sets the replay header on the answer of a remembered write.
func markReplayed(w http.ResponseWriter, replayed bool) {
	if replayed {
		w.Header().Set(headerReplayed, "true")
	}
}
