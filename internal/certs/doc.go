// Package certs owns the cluster's certificates: it makes the cluster CA and
// node certificates, and turns certificate files into *tls.Config for the
// raft port (mutual TLS between nodes) and for the HTTP client API.
//
// # Files
//
// A certificate directory holds PEM files:
//
//	ca.pem           the cluster CA certificate (ECDSA P-256, self-signed, 10 years)
//	ca-key.pem       its private key (mode 0600); needed only to issue node certificates
//	<name>.pem       a node certificate signed by the CA (1 year), for server and client use
//	<name>-key.pem   its private key (mode 0600)
//
// InitCA writes the first two and IssueNode the others. Neither overwrites
// an existing file unless forced. Every node gets ca.pem and its own pair;
// ca-key.pem can stay on the machine that issues certificates.
//
// # Trust model
//
// Anyone holding a certificate signed by the cluster CA is a node. Between
// nodes (PeerTLS) both sides present their node certificate and each checks
// the other's against the CA, and nothing more: the names and addresses in
// the certificate are not compared with the address dialled. Every node is
// equally trusted, so binding a certificate to one address would add no
// protection against a holder of a valid certificate, who can already join
// any group; it would only make a re-addressed node (a new IP, a NAT, an
// advertise address someone forgot to list) cut itself off from its peers.
// Revoking a node means replacing the CA; there are no revocation lists.
//
// The client API is different: a CLI or HTTP client reaches a node by the
// name the operator typed, so ClientTLS verifies the server's certificate
// the usual way, host name included, which is what the SANs given to
// IssueNode are for (127.0.0.1, ::1 and localhost by default). ServerTLS can
// also require client certificates from a CA, which may be the cluster CA or
// a separate one for clients.
package certs
