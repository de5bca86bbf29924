// Package client is a small Go client for the raftkv HTTP API.
//
// A Client is created with the HTTP addresses of one or more nodes. Any node
// accepts any request (the server forwards writes and linearizable reads to
// the right shard leader), so the client only has to find a node that
// answers:
//
//	c := client.New([]string{"127.0.0.1:8080", "127.0.0.1:8081"},
//		client.WithTimeout(3*time.Second))
//	res, err := c.Put(ctx, "users/42", []byte("alice"), client.IfAbsent())
//	v, err := c.Get(ctx, "users/42")
//
// # Going straight to the leader
//
// A node that does not lead a key's shard forwards the request to the leader:
// one more hop. WithLeaderRouting makes the client send each key request to
// its shard's leader itself, learnt from GET /v1/cluster and kept current
// from every answer (which names the node that served it), falling back to
// the endpoints when that leader cannot be reached. A node that cannot
// reach the shard's leader answers 503 or 504 with a leader hint
// (X-Raftkv-Leader): the client records it and sends the request once more
// to the hinted leader when that is safe (a read, or a write answered 503,
// which did not happen; never a write answered 504). It pays off when the
// nodes' advertised HTTP addresses are reachable from the client; when they
// are not (behind a load balancer), a leader address that fails to dial is
// skipped for a while and the endpoints, which forward, serve everything.
//
// # Authentication
//
// WithToken sends a bearer token with every call, for a cluster that runs
// with --auth.
//
// # TLS
//
// WithTLS makes the client speak HTTPS, verifying the nodes with the
// config's roots and presenting its certificate to a cluster that requires
// client certificates; bare "host:port" endpoints then mean https:
//
//	pool := x509.NewCertPool()
//	pool.AppendCertsFromPEM(caPEM) // the cluster CA, ca.pem
//	pair, err := tls.LoadX509KeyPair("ops.pem", "ops-key.pem")
//	c := client.New([]string{"10.0.0.1:8080"},
//		client.WithTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}))
//
// # What it offers
//
// Every call takes a context, which bounds it together with WithTimeout.
//
//   - Keys: Put (with IfMatch or IfAbsent), Get (linearizable, or Stale),
//     Delete, List.
//   - Transactions: Txn (compare / success / failure over any keys, in one
//     shard or across shards), TxnJSON (the JSON of docs/transactions.md
//     passed through), TxnRecord (GET /v1/txn/{id}: how a cross-shard
//     transaction ended).
//   - Backups: Backup streams GET /v1/backup into an io.Writer and checks
//     the archive on the way (manifest, SHA-256 of every checkpoint, record
//     checksums, the archive's end), as `raftkv snapshot inspect` does;
//     SaveBackup writes it to a file that appears only once it is complete,
//     fsynced and verified.
//   - Cluster: Cluster (GET /v1/cluster; NoProbe for the node's view alone),
//     Overview (every node's status through one node), Checkpoint (POST
//     /v1/cluster/snapshot on one node), Join, Leave, TransferLeadership,
//     Live and Ready (/livez, /readyz). At addresses one node.
//   - Authentication: CreateToken, RevokeToken, Tokens, PutRole, GetRole,
//     DeleteRole, Roles.
//
// The examples run against a real in-process cluster (raftkvtest).
//
// # Failover and retries
//
// The client sends each request to the endpoint that answered last. When a
// connection to an endpoint cannot be made (refused, reset while dialing,
// dial timeout) the request is sent to the next endpoint in the list. Such a
// request never reached a server, so this is safe for every operation.
//
// Once a request has been written to a connection, a write is resent only
// under its idempotency key (below): if the connection then fails, or the
// deadline passes, the write may or may not have been applied, and without
// a resend that settles it the client returns an error for which
// errors.Is(err, ErrIndeterminate) is true. Reads, transactions of gets
// only, and the calls that are safe to repeat (Join, Leave, Checkpoint) are
// retried on the next endpoint after any transport failure. A backup also
// moves on from a node that answers 429 or 503, since each node stages its
// own. Every request moves on from a node that answers 410 removed (it was
// removed from the cluster and did nothing); with no endpoint left the
// caller gets ErrRemoved.
//
// # Exactly-once writes
//
// Put, Delete and a Txn that writes go under an Idempotency-Key: the
// caller's (WithIdempotencyKey) or a random one the client makes for the
// call (NewIdempotencyKey). The cluster applies a write under a key once
// and answers any repeat with the first answer, for its
// --idempotency-window (10 minutes by default). So after an answer that
// leaves the outcome open (a 504, a connection cut after sending), the
// client sends the write again with the same key, backing off from 50 ms
// to 1 s, for up to WithIdempotentRetry (1 minute by default): the first
// answer that is the write's own ends the call, with PutResult.Replayed or
// TxnResult.Replayed set when the write had been applied by an earlier
// send. It resends only to a cluster that has echoed a key (a node of an
// older build ignores the header); during a rolling upgrade from one, set
// WithIdempotentRetry(0). A caller that wants to settle an indeterminate
// write later makes the key itself and sends the write again with it,
// within the window:
//
//	key := client.NewIdempotencyKey()
//	_, err := c.Txn(ctx, transfer, client.WithIdempotencyKey(key))
//	if errors.Is(err, client.ErrIndeterminate) {
//		_, err = c.Txn(ctx, transfer, client.WithIdempotencyKey(key)) // later: applied once either way
//	}
//
// The same key on a different request is ErrIdempotencyKeyReused (422).
//
// # Errors
//
// An error answer from the server is an *APIError: the HTTP status, the
// server's error code and message, the node that answered, its Retry-After
// hint, the leader hint of a key request it could not serve (Leader,
// LeaderAddr), the key's current revision after a failed IfMatch
// (CurrentRevision), and whether the write it answers may have happened
// anyway (Indeterminate). Compare it with the sentinel errors using
// errors.Is:
//
//	if errors.Is(err, client.ErrNotFound) { ... }
//	if errors.Is(err, client.ErrPrecondition) { ... } // If-Match / IfAbsent failed
//	if errors.Is(err, client.ErrOverloaded) { ... }   // 429: retry after RetryAfter
//
// Every error code of docs/api.md has a sentinel, and a constant for the
// code itself (CodeNotFound, ...); a code the client does not know falls
// back to the sentinel of the answer's HTTP status.
//
// A failure without a usable answer is a *RequestError: no endpoint could
// be reached, the connection broke, the deadline passed, or the answer to a
// write could not be decoded. It matches ErrTimeout, ErrUnavailable (no
// endpoint reachable) or ErrIndeterminate as appropriate, and wraps the
// cause (errors.Is(err, context.DeadlineExceeded) works).
//
// Whether a failed write may have happened is decided here, in one place,
// and nowhere else (the CLI and `raftkv chaos` use these errors as they
// are). errors.Is(err, ErrIndeterminate) is true exactly when the call was
// a write (a transaction with a put or delete counts) and:
//
//   - it was sent (its headers were written to a connection) and the
//     connection then broke or the deadline passed before an answer; or
//   - it was answered 504, 500 or any other 5xx, except raftkv's own 503
//     unavailable, which promises that nothing was done (a 503 without
//     raftkv's error body, from a proxy, promises nothing); or
//   - it was answered 2xx but the answer could not be decoded: the write
//     happened, what it did is unknown.
//
// Calls that are safe to repeat (Join, Leave, Checkpoint, and the auth
// calls that set or delete) go to the next endpoint instead when a
// connection breaks, and are indeterminate only when the deadline ends them
// after sending.
//
// Everything else means the operation did not happen: a 4xx (409 conflict,
// 412, 429 overloaded included), raftkv's 503, and a request that was never
// sent. Sent(err) says whether the request may have reached a server at all
// (false for a refused connection, or a call refused before sending), and
// Status(err) gives the HTTP status of the answer, 0 when none came.
//
// A transaction's answer names its id (TxnResult.ID); an indeterminate
// error cannot, since no answer came. To find out what happened then, read
// the keys the transaction writes; with an id from an earlier answer,
// TxnRecord shows the record (pending, committed or aborted).
package client
