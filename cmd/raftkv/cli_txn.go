package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

var txnHelp = cmdHelpText{
	usage:   "raftkv txn [-f FILE] [flags]",
	summary: "run a transaction from a JSON file or stdin",
	description: `Runs a transaction given as JSON (POST /v1/txn) from FILE, or from stdin
when -f is missing or "-". Prints the JSON answer: which branch ran, each
op's result and the transaction id. Exits 1 on an error such as 409
conflict (another transaction held a key; nothing was applied).
See docs/transactions.md for the format.`,
	examples: []string{
		"raftkv txn -f transfer.json",
		`echo '{"success":[{"op":"put","key":"a","value":"1"},{"op":"put","key":"b","value":"2"}]}' | raftkv txn`,
	},
}

func cmdTxn(args []string, stdout, stderr io.Writer) int {
	inv := newInvocation("txn", txnHelp, stdout, stderr)
	file := inv.fs.String("f", "-", "read the transaction from `FILE` (- for stdin)")
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
	ctx, cancel := context.WithTimeout(inv.context(), inv.timeout)
	defer cancel()
	status, answer, err := postTxn(ctx, inv.httpClient(), inv.endpointURLs(), body)
	if err != nil {
		return inv.fail(err)
	}
	if status != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(answer, &e)
		fmt.Fprintf(stderr, "Error: %s: %s\n", e.Error.Code, e.Error.Message)
		return 1
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, answer, "", "  ") == nil {
		answer = pretty.Bytes()
	}
	_, _ = stdout.Write(answer)
	return 0
}

// postTxn sends the transaction to the first endpoint that accepts a
// connection. A request that reached a node is never resent: a transaction
// is not idempotent.
func postTxn(ctx context.Context, hc *http.Client, endpoints []string, body []byte) (int, []byte, error) {
	var errs []error
	for _, ep := range endpoints {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep+"/v1/txn", bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		var opErr *net.OpError
		var certErr *tls.CertificateVerificationError
		if err != nil && (errors.As(err, &opErr) && opErr.Op == "dial" || errors.As(err, &certErr)) {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			return 0, nil, fmt.Errorf("%w (the outcome is unknown: check before retrying)", err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		return resp.StatusCode, data, err
	}
	return 0, nil, fmt.Errorf("no endpoint reachable: %w", errors.Join(errs...))
}
