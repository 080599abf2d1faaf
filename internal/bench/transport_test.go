package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

// selfSigned writes a self-signed ECDSA P-256 certificate for 127.0.0.1
// and localhost, and its key, into dir; the certificate is its own CA.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "petrel bench test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// startOn starts an in-process broker on a listener of type typ (tls, ws
// or wss) with the certificate given, and returns its host and port.
func startOn(t *testing.T, typ, certFile, keyFile string) (string, int) {
	t.Helper()
	lc := listener.Config{Name: typ, Type: typ}
	if typ != "ws" {
		lc.CertFile, lc.KeyFile = certFile, keyFile
	}
	_, addr := mqtttest.StartOn(t, broker.Options{}, lc)
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, port
}

// TestTransports: every scenario kind runs over TLS, WebSocket and
// WebSocket over TLS against a broker listening only on that transport
// (a plain MQTT connection would get no CONNACK there), delivering every
// message, and conns over TLS opens every connection with a handshake.
func TestTransports(t *testing.T) {
	certFile, keyFile := selfSigned(t, t.TempDir())
	for _, tr := range []string{"tls", "ws", "wss"} {
		t.Run(tr, func(t *testing.T) {
			host, port := startOn(t, tr, certFile, keyFile)
			base := Config{Host: host, Port: port, Transport: tr, CAFile: certFile, Duration: 300 * time.Millisecond, Drain: 3 * time.Second}

			c := base
			c.Scenario, c.QoS, c.Clients, c.Rate = "fanin", 1, 2, 2000
			r, err := Run(context.Background(), c)
			if err != nil {
				t.Fatalf("fanin: %v", err)
			}
			if len(r.Errors) > 0 {
				t.Errorf("fanin errors: %v", r.Errors)
			}
			checkDelivery(t, r)
			if r.Transport != tr {
				t.Errorf("report transport %q, want %q", r.Transport, tr)
			}

			c = base
			c.Scenario, c.Clients = "conns", 20
			r, err = Run(context.Background(), c)
			if err != nil {
				t.Fatalf("conns: %v", err)
			}
			if r.Connections != 20 || len(r.Errors) > 0 {
				t.Errorf("conns: %d connections, errors %v", r.Connections, r.Errors)
			}
		})
	}
}

// TestTransportRefusals: a broker certificate the CA file does not vouch
// for fails the run at the handshake; a TLS client against a WebSocket
// listener, an unknown transport and an unreadable CA file are refused.
func TestTransportRefusals(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	otherCA, _ := selfSigned(t, t.TempDir())
	host, port := startOn(t, "tls", certFile, keyFile)

	c := Config{Scenario: "fanin", Host: host, Port: port, Transport: "tls", CAFile: otherCA, Clients: 1, Duration: 100 * time.Millisecond, Drain: time.Second}
	if _, err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Errorf("a certificate from another CA: %v, want a TLS handshake error", err)
	}
	c.Transport = "wss"
	wsHost, wsPort := startOn(t, "ws", "", "")
	c.Host, c.Port, c.CAFile = wsHost, wsPort, certFile
	if _, err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Errorf("wss against a plain WebSocket listener: %v, want a TLS handshake error", err)
	}
	for _, tc := range []Config{
		{Scenario: "fanin", Transport: "quic"},
		{Scenario: "fanin", Transport: "tls", CAFile: filepath.Join(dir, "none.pem")},
		{Scenario: "fanin", Transport: "tls", CAFile: filepath.Join(dir, "key.pem")},
	} {
		if _, err := Run(context.Background(), tc); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", tc, err)
		}
	}
}
