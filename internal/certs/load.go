package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// PeerTLS builds the mutual-TLS configs for the raft port from a node's
// certificate, its key and the cluster CA: server is for the listener and
// requires every dialler to present a certificate signed by the CA; client
// is for dialling peers and presents the node's certificate.
//
// The client checks that the peer's certificate chains to the CA and is
// meant for a server, but not that it names the address dialled; see
// "Trust model" in the package comment. Both sides require TLS 1.3.
//
// It fails, naming the file, if a file is missing or unreadable, the key
// does not match the certificate, or the certificate is expired or not
// signed by the CA, so a misconfigured node stops at startup rather than
// being refused by every peer.
func PeerTLS(certFile, keyFile, caFile string) (server, client *tls.Config, err error) {
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, nil, err
	}
	pair, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	if err := verifyLeaf(pair.Leaf, pool, time.Now(), x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, nil, fmt.Errorf("%s against %s: %w", certFile, caFile, err)
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		// The standard check would also compare the certificate's names
		// with the dialled host; VerifyConnection below does the chain
		// check without it. Skipping verification here only hands it over.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("certs: peer presented no certificate")
			}
			return verifyPeer(cs.PeerCertificates, pool, time.Now())
		},
	}
	return server, client, nil
}

// ServerTLS builds the config for the HTTP client API from the node's
// certificate and key. With clientCAFile set, every client must present a
// certificate signed by that CA; with it empty, clients are not asked for
// one. TLS 1.2 is the minimum, for the curl and client libraries in use.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	pair, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if err := checkValidity(pair.Leaf, time.Now()); err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
	}
	if clientCAFile != "" {
		pool, err := loadPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = pool
	}
	return cfg, nil
}

// ClientTLS builds the config for a CLI or HTTP client of the API. caFile
// is the CA that signed the server's certificate; empty means the system's
// roots. The server's certificate must name the host dialled. certFile and
// keyFile, given together or not at all, are the client's own certificate
// for a server that requires one.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("certs: client certificate %q and key %q must be given together", certFile, keyFile)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		pair, err := loadKeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// verifyPeer checks a peer's chain against the cluster CA, ignoring the
// names in it. chain[0] is the peer's certificate; any others are offered
// as intermediates, though InitCA's CA signs node certificates directly.
func verifyPeer(chain []*x509.Certificate, pool *x509.CertPool, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("certs: peer certificate %q: %w", chain[0].Subject.CommonName, err)
	}
	return nil
}

// verifyLeaf checks that a node's own certificate is in date, chains to
// the CA and allows every usage in usages.
func verifyLeaf(leaf *x509.Certificate, pool *x509.CertPool, now time.Time, usages ...x509.ExtKeyUsage) error {
	if err := checkValidity(leaf, now); err != nil {
		return err
	}
	for _, u := range usages {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			var unknown x509.UnknownAuthorityError
			if errors.As(err, &unknown) {
				return fmt.Errorf("%w: %v", ErrNotSignedByCA, err)
			}
			return err
		}
	}
	return nil
}

// checkValidity gives an expired certificate its own error, with the dates,
// ahead of the chain checks that would also fail on it.
func checkValidity(c *x509.Certificate, now time.Time) error {
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return fmt.Errorf("%w: valid from %s to %s", ErrExpired,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// loadKeyPair reads a certificate and its key, saying which file is at
// fault; tls.LoadX509KeyPair alone does not name them.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readFile(certFile, "certificate")
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readFile(keyFile, "key")
	if err != nil {
		return tls.Certificate{}, err
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return tls.Certificate{}, fmt.Errorf("%w: %s holds no certificate", ErrNoPEM, certFile)
	}
	leaf, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: parsing %s: %w", certFile, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return tls.Certificate{}, fmt.Errorf("%w: %s holds no key", ErrNoPEM, keyFile)
	}
	key, err := parseKey(kb.Bytes)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: parsing %s: %w", keyFile, err)
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return tls.Certificate{}, fmt.Errorf("%w: %s is not the key of %s", ErrKeyMismatch, keyFile, certFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: %s / %s: %w", certFile, keyFile, err)
	}
	pair.Leaf = leaf
	return pair, nil
}

// parseKey accepts the key encodings openssl and Go write: PKCS#8 (what
// this package writes), SEC 1 EC keys and PKCS#1 RSA keys.
func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS#8, EC or RSA private key")
}

// loadPool reads a CA file into a pool of its own, never the system roots.
func loadPool(caFile string) (*x509.CertPool, error) {
	certs, err := readCertificates(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// readCertificates parses every certificate in a PEM file.
func readCertificates(path string) ([]*x509.Certificate, error) {
	data, err := readFile(path, "CA certificate")
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certs: parsing %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s holds no certificate", ErrNoPEM, path)
	}
	return out, nil
}

// readPEM returns the first block of type typ in path.
func readPEM(path, typ string) (*pem.Block, error) {
	data, err := readFile(path, "key")
	if err != nil {
		return nil, err
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%w: %s holds no %s block", ErrNoPEM, path, typ)
		}
		if b.Type == typ {
			return b, nil
		}
	}
}

func readFile(path, what string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("certs: no %s file given", what)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: reading %s: %w", what, err)
	}
	return data, nil
}
