package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names in a certificate directory; see the package comment.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// Validity of what InitCA and IssueNode make. Certificates start an hour in
// the past so that a node whose clock is a little behind accepts them.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	nodeValidity = 365 * 24 * time.Hour
	clockSkew    = time.Hour
)

// DefaultHosts are the SANs of a node certificate when IssueNode is given
// none: enough for a cluster on one machine.
var DefaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// Errors returned by this package. Callers match them with errors.Is; the
// wrapping error names the file.
var (
	// ErrExists is returned by InitCA and IssueNode when a file they would
	// write is already there and force is off.
	ErrExists = errors.New("certs: file exists")
	// ErrBadName is returned by IssueNode for a node name that cannot be a
	// file name in the certificate directory.
	ErrBadName = errors.New("certs: invalid node name")
	// ErrNoPEM is returned for a file without the PEM block it should hold.
	ErrNoPEM = errors.New("certs: no PEM data")
	// ErrKeyMismatch is returned when a key file does not belong to its
	// certificate.
	ErrKeyMismatch = errors.New("certs: key does not match certificate")
	// ErrNotSignedByCA is returned when a node certificate does not chain to
	// the CA it is loaded with.
	ErrNotSignedByCA = errors.New("certs: certificate not signed by the CA")
	// ErrExpired is returned when a certificate is outside its validity
	// period now.
	ErrExpired = errors.New("certs: certificate expired or not yet valid")
)

// NodeFiles returns the certificate and key paths IssueNode writes for name.
func NodeFiles(dir, name string) (certFile, keyFile string) {
	return filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
}

// InitCA makes a new cluster CA in dir (created if missing) as ca.pem and
// ca-key.pem. It refuses to replace either file unless force is set; a new
// CA invalidates every node certificate issued by the old one.
func InitCA(dir string, force bool) error {
	now := time.Now()
	return initCA(dir, force, now.Add(-clockSkew), now.Add(caValidity))
}

func initCA(dir string, force bool, notBefore, notAfter time.Time) error {
	certFile, keyFile := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	if err := checkFree(force, certFile, keyFile); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certs: generating CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The serial's first bytes tell one cluster's CA from another's in
		// verification errors and openssl output.
		Subject:               pkix.Name{CommonName: fmt.Sprintf("raftkv cluster CA %.8s", serial.Text(16))},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // it signs node certificates only, never another CA
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("certs: creating CA certificate: %w", err)
	}
	return writePair(dir, certFile, keyFile, der, key)
}

// IssueNode makes a certificate for node name signed by the CA in dir and
// writes it as <name>.pem and <name>-key.pem next to the CA. hosts are its
// SANs: each entry that parses as an IP address becomes an IP SAN, any other
// a DNS name; none means DefaultHosts. The certificate serves both ends of a
// connection (server and client auth), as a node both accepts and dials
// peers. It refuses to replace existing files unless force is set.
func IssueNode(dir, name string, hosts []string, force bool) error {
	now := time.Now()
	return issueNode(dir, name, hosts, force, now.Add(-clockSkew), now.Add(nodeValidity))
}

func issueNode(dir, name string, hosts []string, force bool, notBefore, notAfter time.Time) error {
	if err := validName(name); err != nil {
		return err
	}
	certFile, keyFile := NodeFiles(dir, name)
	if err := checkFree(force, certFile, keyFile); err != nil {
		return err
	}
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certs: generating key for %s: %w", name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch ip := net.ParseIP(h); {
		case h == "":
			return fmt.Errorf("certs: empty host name for %s", name)
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("certs: signing certificate for %s: %w", name, err)
	}
	return writePair(dir, certFile, keyFile, der, key)
}

// loadCA reads the CA certificate and key that IssueNode signs with.
func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certFile, keyFile := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	certs, err := readCertificates(certFile)
	if err != nil {
		return nil, nil, err
	}
	ca := certs[0]
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("certs: %s is not a CA certificate", certFile)
	}
	block, err := readPEM(keyFile, "PRIVATE KEY")
	if err != nil {
		return nil, nil, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: parsing %s: %w", keyFile, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("certs: %s: want an ECDSA key, got %T", keyFile, parsed)
	}
	if !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("%w: %s and %s", ErrKeyMismatch, keyFile, certFile)
	}
	return ca, key, nil
}

// validName keeps a node name usable as a file name in the directory and
// apart from the CA's own files.
func validName(name string) error {
	if name == "" || name == "ca" || strings.HasPrefix(name, ".") || strings.HasSuffix(name, "-key") {
		return fmt.Errorf("%w %q", ErrBadName, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w %q: only letters, digits, '-', '_' and '.'", ErrBadName, name)
		}
	}
	return nil
}

// checkFree fails with ErrExists if any of files is present, so that a pair
// is never half replaced.
func checkFree(force bool, files ...string) error {
	if force {
		return nil
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			return fmt.Errorf("%w: %s (use force to replace it)", ErrExists, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("certs: %w", err)
		}
	}
	return nil
}

// writePair writes the key first, readable by its owner only, then the
// certificate. Each file is written to a temporary name and renamed, so a
// crash leaves either the old file or the whole new one.
func writePair(dir, certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: encoding key: %w", err)
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return n, nil
}
