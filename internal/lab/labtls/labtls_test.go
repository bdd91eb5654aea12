package labtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/netip"
	"os"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	f, err := Write(dir, []string{"192.0.2.1", "2001:db8:1::1", "online.example"})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(f.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := Pool(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"192.0.2.1", "2001:db8:1::1", "online.example"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "192.0.2.2", Roots: pool}); err == nil {
		t.Error("verified for a host it was not made for")
	}
	// A second run's CA does not vouch for this certificate.
	g, err := Write(t.TempDir(), []string{"192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Pool(g.CA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "192.0.2.1", Roots: other}); err == nil {
		t.Error("another run's CA verified this run's certificate")
	}
	if _, err := Write(dir, nil); err == nil {
		t.Error("Write without a host: no error")
	}
}

// TestHandshake serves the certificate on loopback and connects with a
// client that trusts only the CA, as the lab's load client does.
func TestHandshake(t *testing.T) {
	f, err := Write(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "hello")
			}()
		}
	}()
	pool, err := Pool(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	c, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("a client trusting the CA: %v", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "hello" {
		t.Errorf("read %q", b)
	}
	_, err = tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: x509.NewCertPool()})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("a client without the CA: %v, want an unknown authority", err)
	}
	if _, err := Pool(f.Key); err == nil {
		t.Error("Pool of a key file: no error")
	}
}
