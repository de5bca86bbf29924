package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

var txnHelp = cmdHelpText{
	usage:   "raftkv txn [-f FILE] [flags]",
	summary: "run a transaction from a JSON file or stdin",
	description: `Runs a transaction given as JSON (POST /v1/txn) from FILE, or from stdin
when -f is missing or "-". Prints the JSON answer: which branch ran, each
op's result and the transaction id. Exits 1 on an error such as 409
conflict (another transaction held a key; nothing was applied). A
transaction that writes commits at most once: it goes under an idempotency
key (--idempotency-key, or one of the client's own) and is resent only
while its outcome is unknown.
See docs/transactions.md for the format.`,
	examples: []string{
		"raftkv txn -f transfer.json",
		"raftkv txn -f transfer.json --idempotency-key transfer-2026-12-02-7",
		`echo '{"success":[{"op":"put","key":"a","value":"1"},{"op":"put","key":"b","value":"2"}]}' | raftkv txn`,
	},
}

func cmdTxn(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("txn", txnHelp, stdout, stderr)
	file := inv.fs.String("f", "-", "read the transaction from `FILE` (- for stdin)")
	idemKey := idempotencyKeyFlag(inv)
	pos, code, ok := inv.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return inv.usageError("txn takes no arguments, got %d", len(pos))
	}
	var body []byte
	var err error
	if *file == "-" {
		if isTerminal(stdin) {
			fmt.Fprintln(stderr, "(reading the transaction from stdin; end it with Ctrl-D)")
		}
		body, err = io.ReadAll(stdin)
	} else {
		body, err = os.ReadFile(*file)
	}
	if err != nil {
		return inv.fail(err)
	}
	if !json.Valid(body) {
		return inv.usageError("the transaction is not valid JSON")
	}
	// The client sends it to the primary shard's leader (unless
	// --no-leader-routing), under an idempotency key, and resends it
	// only while its outcome is unknown (cli_idempotency.go).
	key := writeKey(*idemKey)
	answer, err := inv.client().TxnJSON(inv.context(), body, withIdempotencyKey(nil, key)...)
	if err != nil {
		return failWrite(inv, err, key)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, answer, "", "  ") == nil {
		answer = pretty.Bytes()
	}
	_, _ = stdout.Write(answer)
	return 0
}
