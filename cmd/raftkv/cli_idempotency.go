package main

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/client"
)

// Exactly-once writes from the CLI. put, del and txn send their write under
// an idempotency key and resend it while its outcome is unknown (a 504, a
// connection cut after sending), for up to the client's retry budget: the
// client package does that with a key of its own for every write. With
// --idempotency-key the key is the caller's, so a script that saw the CLI
// exit with an unknown outcome can run the same command again, with the same
// key, within the cluster's --idempotency-window: the write still applies
// at most once, and the second run prints the first answer.

const idempotencyKeyUsage = "apply the write at most once under `KEY` (1..255 printable ASCII characters, no spaces): run the command again with the same KEY after an unknown outcome, within the cluster's --idempotency-window, and it prints the first answer instead of writing again"

// idempotencyKeyFlag defines --idempotency-key on a write command.
func idempotencyKeyFlag(inv *invocation) *string {
	return inv.fs.String("idempotency-key", "", idempotencyKeyUsage)
}

// writeKey returns the key a write goes under: the one given, or a new
// one, which the CLI can then name when the outcome stays unknown.
func writeKey(given string) string {
	if given != "" {
		return given
	}
	return client.NewIdempotencyKey()
}

// withIdempotencyKey adds the key to a write's options.
func withIdempotencyKey(opts []client.WriteOption, key string) []client.WriteOption {
	return append(opts, client.WithIdempotencyKey(key))
}

// failWrite reports a write's error, and after an unknown outcome the key
// that finds it out without writing twice.
func failWrite(inv *invocation, err error, key string) int {
	code := inv.fail(err)
	if errors.Is(err, client.ErrIndeterminate) {
		fmt.Fprintf(inv.stderr, "Note: to find out without writing twice, run the same command again within the cluster's --idempotency-window (10m by default) with --idempotency-key %s\n", key)
	}
	return code
}

// replayedNote is appended to a write's text output when the answer is the
// remembered first answer of its key.
func replayedNote(replayed bool) string {
	if replayed {
		return " (replayed: applied earlier under this idempotency key)"
	}
	return ""
}
