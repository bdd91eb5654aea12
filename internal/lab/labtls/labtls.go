// Package labtls makes the throwaway TLS certificates of a lab run: a CA
// made for the run alone and a server certificate it signs for the
// online host's addresses, written as PEM files into the run's directory.
// The lab's TLS terminator (nginx on the online host) serves the
// certificate; the load client trusts the CA and nothing else
// (load.Options.CA), so the handshake is verified as a real client's
// would be, without InsecureSkipVerify and without touching the system's
// trust store.
//
// Keys are ECDSA P-256. The CA's key is never written: nothing else can
// be signed with it once Write returns.
package labtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names under the directory given to Write.
const (
	CAFile   = "ca.pem"     // the CA certificate, for the clients
	CertFile = "server.pem" // the server certificate, for the terminator
	KeyFile  = "server.key" // its key, PKCS #8, mode 0600
)

// Files are the paths Write wrote.
type Files struct {
	CA, Cert, Key string
}

// validity of the certificates: from an hour ago (clocks of the lab's
// namespaces are the host's, but a little slack costs nothing) to a day
// from now.
const (
	notBeforeSlack = time.Hour
	lifetime       = 24 * time.Hour
)

// Write makes a new CA and a server certificate for hosts (IP addresses
// or DNS names, at least one) signed by it, and writes them to dir,
// which must exist.
func Write(dir string, hosts []string) (Files, error) {
	if len(hosts) == 0 {
		return Files{}, errors.New("labtls: no host to certify")
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("labtls: CA key: %w", err)
	}
	ca := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "tcpcopy-lab throwaway CA", Organization: []string{"tcpcopy-lab"}},
		NotBefore:             now.Add(-notBeforeSlack),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if ca.SerialNumber, err = serial(); err != nil {
		return Files{}, err
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("labtls: CA certificate: %w", err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return Files{}, fmt.Errorf("labtls: CA certificate: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("labtls: server key: %w", err)
	}
	leaf := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"tcpcopy-lab"}},
		NotBefore:   now.Add(-notBeforeSlack),
		NotAfter:    now.Add(lifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, h)
		}
	}
	if leaf.SerialNumber, err = serial(); err != nil {
		return Files{}, err
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("labtls: server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Files{}, fmt.Errorf("labtls: server key: %w", err)
	}

	f := Files{CA: filepath.Join(dir, CAFile), Cert: filepath.Join(dir, CertFile), Key: filepath.Join(dir, KeyFile)}
	for _, w := range []struct {
		path, kind string
		der        []byte
		mode       os.FileMode
	}{
		{f.CA, "CERTIFICATE", caDER, 0o644},
		{f.Cert, "CERTIFICATE", leafDER, 0o644},
		{f.Key, "PRIVATE KEY", keyDER, 0o600},
	} {
		b := pem.EncodeToMemory(&pem.Block{Type: w.kind, Bytes: w.der})
		if err := os.WriteFile(w.path, b, w.mode); err != nil {
			return Files{}, fmt.Errorf("labtls: %w", err)
		}
	}
	return f, nil
}

// serial is a random 128-bit serial number (RFC 5280, section 4.1.2.2:
// positive, at most 20 octets).
func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("labtls: serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// Pool reads the CA certificates of the PEM file path into a pool that
// holds them and nothing else.
func Pool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("labtls: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("labtls: %s: no PEM certificate", path)
	}
	return p, nil
}
