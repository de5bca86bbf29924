package main

import "github.com/raftkv/raftkv/client"

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

// withIdempotencyKey adds the key, if one was given, to a write's options.
func withIdempotencyKey(opts []client.WriteOption, key string) []client.WriteOption {
	if key == "" {
		return opts
	}
	return append(opts, client.WithIdempotencyKey(key))
}

// replayedNote is appended to a write's text output when the answer is the
// remembered first answer of its key.
func replayedNote(replayed bool) string {
	if replayed {
		return " (replayed: applied earlier under this idempotency key)"
	}
	return ""
}
