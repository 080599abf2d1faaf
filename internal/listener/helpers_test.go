package listener

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM of cert
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	ca.file = filepath.Join(t.TempDir(), name+"-ca.pem")
	writeFile(t, ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return ca
}

var serial struct {
	sync.Mutex
	n int64
}

// issue returns PEM certificate and key for cn, for server or client use.
func (ca *testCA) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	serial.n++
	sn := serial.n + 1
	serial.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// serverFiles issues a server certificate for cn into dir and returns the
// file names.
func (ca *testCA) serverFiles(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	c, k := ca.issue(t, cn, true)
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	writeFile(t, certFile, c)
	writeFile(t, keyFile, k)
	return certFile, keyFile
}

// clientCert issues a client certificate for cn.
func (ca *testCA) clientCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, cn, false)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// listen starts a listener for c, closed at cleanup.
func listen(t *testing.T, c Config) *Listener {
	t.Helper()
	if c.Address == "" {
		c.Address = "127.0.0.1:0"
	}
	l, err := Listen(context.Background(), c, nil)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// acceptor collects accepted connections on a channel until cleanup, which
// closes the listener and every accepted connection.
type acceptor struct {
	conns chan net.Conn
	mu    sync.Mutex
	all   []net.Conn
	wg    sync.WaitGroup
}

func startAccepting(t *testing.T, l net.Listener) *acceptor {
	t.Helper()
	a := &acceptor{conns: make(chan net.Conn, 1000)}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept: %v", err)
				}
				return
			}
			a.mu.Lock()
			a.all = append(a.all, c)
			a.mu.Unlock()
			a.conns <- c
		}
	}()
	t.Cleanup(func() {
		_ = l.Close() // also closed by listen's cleanup; error irrelevant here
		a.wg.Wait()
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, c := range a.all {
			_ = c.Close() // test teardown
		}
	})
	return a
}

// next returns the next accepted connection or fails after d.
func (a *acceptor) next(t *testing.T, d time.Duration) net.Conn {
	t.Helper()
	select {
	case c := <-a.conns:
		return c
	case <-time.After(d):
		t.Fatalf("no connection accepted within %v", d)
		return nil
	}
}

// none checks that no connection is accepted within d.
func (a *acceptor) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case c := <-a.conns:
		t.Fatalf("unexpected connection accepted from %v", c.RemoteAddr())
	case <-time.After(d):
	}
}

// echo copies everything read from c back to it, in the background, until
// c is closed.
func echo(t *testing.T, c net.Conn) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(c, c) // ends when either side closes
	}()
	t.Cleanup(func() {
		_ = c.Close() // test teardown
		<-done
	})
}

// roundTrip writes msg to c and expects it echoed back.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}
