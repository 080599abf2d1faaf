package listener

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

// TestServerTLS: the configuration serves the loaded certificate with the
// minimum version asked for, Reload swaps in a new one, and a failed
// reload keeps the old.
func TestServerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	certFile, keyFile := ca.serverFiles(t, dir, "one")
	s, err := NewServerTLS(certFile, keyFile, "1.3")
	if err != nil {
		t.Fatal(err)
	}
	if s.Config().MinVersion != tls.VersionTLS13 {
		t.Fatalf("min version %x", s.Config().MinVersion)
	}
	cn := func() string {
		t.Helper()
		c, err := s.Config().GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if got := cn(); got != "one" {
		t.Fatalf("serves %q", got)
	}
	ca.serverFiles(t, dir, "two") // same file names, a new certificate
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "two" {
		t.Fatalf("after reload serves %q", got)
	}
	writeFile(t, keyFile, []byte("garbage"))
	if err := s.Reload(); err == nil {
		t.Fatal("a garbage key reloaded")
	}
	if got := cn(); got != "two" {
		t.Fatalf("after a failed reload serves %q", got)
	}
	if _, err := NewServerTLS(certFile, keyFile, "1.1"); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
}
