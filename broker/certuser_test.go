package broker_test

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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// recordingAuth remembers what the broker told it of each CONNECT.
type recordingAuth struct{ seen chan broker.ConnectInfo }

func (a recordingAuth) Authenticate(_ context.Context, ci *broker.ConnectInfo) (*broker.Identity, error) {
	a.seen <- *ci
	return &broker.Identity{Username: ci.Username, ClientID: ci.ClientID}, nil
}

func TestClientCertificateNamesTheClient(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "test CA", true)
	srv, srvKey := newCert(t, ca, caKey, "localhost", false)
	cli, cliKey := newCert(t, ca, caKey, "device-42", false)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	writePEM(t, filepath.Join(dir, "srv.pem"), "CERTIFICATE", srv.Raw)
	writeKey(t, filepath.Join(dir, "srv.key"), srvKey)

	ln, err := listener.Listen(context.Background(), listener.Config{
		Name: "mtls", Type: listener.TypeTLS, Address: "127.0.0.1:0",
		CertFile: filepath.Join(dir, "srv.pem"), KeyFile: filepath.Join(dir, "srv.key"),
		ClientAuth: "optional", ClientCAFile: filepath.Join(dir, "ca.pem"), CertUsername: "cn",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	auth := recordingAuth{seen: make(chan broker.ConnectInfo, 4)}
	b, err := broker.New(broker.Options{Authenticator: auth})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve(listener.Limit(ln, 0, 0)) }()
	t.Cleanup(func() {
		_ = b.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	dial := func(certs []tls.Certificate, username string) *packet.Connack {
		nc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: certs})
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		return mqtttest.NewClient(t, nc, packet.V311).Connect(&packet.Connect{ClientID: "dev", CleanStart: true, UsernameFlag: username != "", Username: username})
	}
	ack := dial([]tls.Certificate{{Certificate: [][]byte{cli.Raw}, PrivateKey: cliKey}}, "someone-else")
	if ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	ci := <-auth.seen
	if ci.Username != "device-42" || !ci.CertUsername || len(ci.PeerCertificates) == 0 || ci.Listener != "mtls" {
		t.Fatalf("authenticator saw username %q (from cert %v, %d certs, listener %q); want the certificate's CN", ci.Username, ci.CertUsername, len(ci.PeerCertificates), ci.Listener)
	}
	// Without a certificate on a listener that names clients by it: refused.
	if ack := dial(nil, "device-42"); ack.ReasonCode != packet.NotAuthorized {
		t.Fatalf("no client certificate: CONNACK %v, want not authorized", ack.ReasonCode)
	}
}

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:        isCA, BasicConstraintsValid: true,
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
}
