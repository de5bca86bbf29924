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
// # Failover and retries
//
// The client sends each request to the endpoint that answered last. When a
// connection to an endpoint cannot be made (refused, reset while dialing,
// dial timeout) the request is sent to the next endpoint in the list. Such a
// request never reached a server, so this is safe for every operation.
//
// Once a request has been written to a connection, a write is never resent:
// if the connection then fails, or the deadline passes, the write may or may
// not have been applied, and the client returns an error for which
// errors.Is(err, ErrIndeterminate) is true. The same holds for a 5xx answer
// to a write, because the server documents that such a write may or may not
// have happened. Reads, and the idempotent membership calls (Join, Leave),
// are retried on the next endpoint after any transport failure.
//
// # Errors
//
// An error answer from the server is returned as *APIError. Compare it with
// the sentinel errors using errors.Is:
//
//	if errors.Is(err, client.ErrNotFound) { ... }
//	if errors.Is(err, client.ErrPrecondition) { ... } // If-Match / IfAbsent failed
//	if errors.Is(err, client.ErrOverloaded) { ... }   // 429: retry after RetryAfter
//
// Every error code of docs/api.md has a sentinel; a code the client does not
// know falls back to the sentinel of the answer's HTTP status.
//
// Failures without an answer are returned as *RequestError, which matches
// ErrTimeout, ErrUnavailable (no endpoint reachable) or ErrIndeterminate as
// appropriate.
package client
