// Package nodeproc owns real `raftkv serve` processes for tests and tools:
// building the binary, picking free 127.0.0.1 ports, starting a cluster
// (node1 bootstraps, the others join it), and per node Kill (SIGKILL), Stop
// (SIGTERM, then wait), Restart, StartFresh, Pause (SIGSTOP) and Resume
// (SIGCONT). It keeps each node's log file, scans logs for crashes, waits
// for a cluster to converge, finds group leaders, and fetches GET
// /v1/cluster, decoded by the client package's types so the repository has
// one decoder of that answer.
//
// With Options.TLS the cluster gets a CA of its own and every node a
// certificate of it (Node.TLS): mutual TLS on the raft port, HTTPS with
// client certificates on the API, joins through https://, and the harness
// probes each node with its own files.
//
// Every process is started with Pdeathsig=SIGKILL, so it dies with the
// process that started it, and is only ever signalled by its own PID.
//
// The package does not import testing: the chaos package, linked into the
// raftkv binary, uses it as is, and systemtest binds it to testing.TB.
// Nodes run on 127.0.0.1 unless Options.Place puts them elsewhere (chaos
// puts them in network namespaces that way).
package nodeproc
