package main

import (
	"bytes"
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
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// cmdOutput is a bytes.Buffer safe for a command writing while the test reads.
type cmdOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *cmdOutput) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *cmdOutput) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cmdResult is what a command run returned and printed.
type cmdResult struct {
	code           int
	stdout, stderr string
}

// runClientCmd runs cmd (pub or sub) in-process with args and stdin.
func runClientCmd(t *testing.T, cmd func(context.Context, []string, io.Reader, io.Writer, io.Writer) int, stdin string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*mqtttest.Timeout)
	defer cancel()
	var out, errOut cmdOutput
	code := cmd(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return cmdResult{code, out.String(), errOut.String()}
}

// startSub runs sub in the background and waits until the broker holds
// its subscriptions. The returned function waits for sub to end.
func startSub(t *testing.T, b *broker.Broker, args ...string) func() cmdResult {
	t.Helper()
	before := b.Stats().Subscriptions
	var out, errOut cmdOutput
	ctx, cancel := context.WithTimeout(context.Background(), 2*mqtttest.Timeout)
	t.Cleanup(cancel)
	done := make(chan int, 1)
	go func() { done <- sub(ctx, args, strings.NewReader(""), &out, &errOut) }()
	filters := 0
	for _, a := range args {
		if a == "-t" || a == "--topic" {
			filters++
		}
	}
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool {
		select {
		case code := <-done:
			done <- code
			return true // ended early; the caller sees why
		default:
		}
		return b.Stats().Subscriptions >= before+filters
	}, "sub to subscribe")
	return func() cmdResult {
		t.Helper()
		select {
		case code := <-done:
			return cmdResult{code, out.String(), errOut.String()}
		case <-time.After(2 * mqtttest.Timeout):
			t.Fatalf("sub did not end; stdout %q stderr %q", out.String(), errOut.String())
		}
		return cmdResult{}
	}
}

func brokerFlags(t *testing.T, addr string) []string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"-h", host, "-p", port}
}

func withArgs(base []string, more ...string) []string {
	return append(append([]string(nil), base...), more...)
}

func expectResult(t *testing.T, r cmdResult, code int, stdout string) {
	t.Helper()
	if r.code != code || r.stdout != stdout {
		t.Fatalf("exit %d stdout %q (stderr %q), want exit %d stdout %q", r.code, r.stdout, r.stderr, code, stdout)
	}
}

func TestPubSubCountVerbose(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	hp := brokerFlags(t, addr)
	wait := startSub(t, b, withArgs(hp, "-C", "2", "-v", "-t", "a/#", "-q", "1")...)
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "-t", "a/1", "-m", "one", "-q", "1")...), 0, "")
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "--topic", "a/2", "--message", "two", "-q", "2")...), 0, "")
	expectResult(t, wait(), 0, "a/1 one\na/2 two\n")
}

func TestPubSubPubLines(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	hp := brokerFlags(t, addr)
	wait := startSub(t, b, withArgs(hp, "-C", "4", "-F", `%l:%p`, "-t", "l")...)
	expectResult(t, runClientCmd(t, pub, "x\n\nyy\nz", withArgs(hp, "-t", "l", "-l", "-q", "1")...), 0, "")
	expectResult(t, wait(), 0, "1:x\n0:\n2:yy\n1:z\n")
}

func TestPubSubPubStdinFileAndNull(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	hp := brokerFlags(t, addr)
	file := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(file, []byte("from file"), 0o600); err != nil {
		t.Fatal(err)
	}
	wait := startSub(t, b, withArgs(hp, "-C", "3", "-v", "-t", "s/#")...)
	// QoS 1: each publisher has its message routed before it exits, so the
	// three arrive in order (QoS 0 publishes from separate connections race).
	expectResult(t, runClientCmd(t, pub, "a\nb\n", withArgs(hp, "-t", "s/stdin", "-s", "-q", "1")...), 0, "")
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "-t", "s/file", "-f", file, "-q", "1")...), 0, "")
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "-t", "s/null", "-n", "-q", "1")...), 0, "")
	expectResult(t, wait(), 0, "s/stdin a\nb\n\ns/file from file\ns/null (null)\n")
}

func TestPubSubRetained(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	hp := brokerFlags(t, addr)
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "-t", "r/1", "-m", "kept", "-r", "-q", "1")...), 0, "")
	expectResult(t, runClientCmd(t, sub, "", withArgs(hp, "-t", "r/#", "-C", "1", "-F", `%r %q %t %p`, "-q", "1")...), 0, "1 1 r/1 kept\n")
	// -r -n clears it: a new subscriber times out with nothing (exit 27).
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "-t", "r/1", "-n", "--retain", "-q", "1")...), 0, "")
	r := runClientCmd(t, sub, "", withArgs(hp, "-t", "r/#", "-W", "1", "-v")...)
	expectResult(t, r, exitTimeout, "")
	if !strings.Contains(r.stderr, "timed out") {
		t.Fatalf("stderr %q, want a timeout message", r.stderr)
	}
}

func TestPubSubProtocolVersions(t *testing.T) {
	for _, v := range []string{"31", "mqttv31", "311", "5", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			b, addr := mqtttest.StartBroker(t, broker.Options{})
			hp := brokerFlags(t, addr)
			wait := startSub(t, b, withArgs(hp, "-V", v, "-C", "1", "-v", "-t", "v/+", "-q", "2")...)
			expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "-V", v, "-t", "v/"+v, "-m", "hi", "-q", "2")...), 0, "")
			expectResult(t, wait(), 0, "v/"+v+" hi\n")
		})
	}
}

func TestPubSubPersistentSession(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	hp := brokerFlags(t, addr)
	// Subscribe with a persistent session, leave, get a message queued, come back.
	expectResult(t, runClientCmd(t, sub, "", withArgs(hp, "-c", "-i", "keep", "-t", "p", "-q", "1", "-W", "1")...), exitTimeout, "")
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "-t", "p", "-m", "queued", "-q", "1")...), 0, "")
	expectResult(t, runClientCmd(t, sub, "", withArgs(hp, "-c", "-i", "keep", "-t", "p", "-q", "1", "-C", "1")...), 0, "queued\n")
}

// denyAuth refuses every client with a reason code.
type denyAuth struct{ code packet.ReasonCode }

func (d denyAuth) Authenticate(context.Context, *broker.ConnectInfo) (*broker.Identity, error) {
	return nil, d.code
}

func TestPubSubConnectionRefused(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: denyAuth{packet.NotAuthorized}})
	hp := brokerFlags(t, addr)
	for _, v := range []string{"311", "5"} {
		r := runClientCmd(t, pub, "", withArgs(hp, "-V", v, "-t", "a", "-m", "x", "-u", "u", "-P", "p")...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "connection refused: not authorized (0x87)") {
			t.Fatalf("pub -V %s: exit %d stderr %q", v, r.code, r.stderr)
		}
		r = runClientCmd(t, sub, "", withArgs(hp, "-V", v, "-t", "a")...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "connection refused: not authorized (0x87)") {
			t.Fatalf("sub -V %s: exit %d stderr %q", v, r.code, r.stderr)
		}
	}
}

func TestPubSubConnectionFailed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	r := runClientCmd(t, pub, "", withArgs(brokerFlags(t, addr), "-t", "a", "-m", "x")...)
	if r.code != exitFailure || !strings.Contains(r.stderr, "dial") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestPubSubBadFlags(t *testing.T) {
	tests := []struct {
		name string
		cmd  func(context.Context, []string, io.Reader, io.Writer, io.Writer) int
		args []string
		want string
	}{
		{"pub unknown flag", pub, []string{"--bogus", "-t", "a", "-m", "x"}, "flag provided but not defined"},
		{"pub no topic", pub, []string{"-m", "x"}, "topic (-t) is required"},
		{"pub no message", pub, []string{"-t", "a"}, "exactly one of"},
		{"pub two messages", pub, []string{"-t", "a", "-m", "x", "-n"}, "exactly one of"},
		{"pub qos 3", pub, []string{"-t", "a", "-m", "x", "-q", "3"}, "QoS 3"},
		{"pub bad version", pub, []string{"-t", "a", "-m", "x", "-V", "4"}, "protocol version"},
		{"pub -c without -i", pub, []string{"-t", "a", "-m", "x", "-c"}, "needs a client id"},
		{"pub will qos without topic", pub, []string{"-t", "a", "-m", "x", "--will-qos", "1"}, "need --will-topic"},
		{"pub cert without key", pub, []string{"-t", "a", "-m", "x", "--cert", "c.pem"}, "--cert and --key"},
		{"pub argument", pub, []string{"-t", "a", "-m", "x", "extra"}, "unexpected argument"},
		{"sub no topic", sub, []string{"-v"}, "at least one topic filter"},
		{"sub bad format", sub, []string{"-t", "a", "-F", "%z"}, "unsupported directive %z"},
		{"sub negative count", sub, []string{"-t", "a", "-C", "-1"}, "must not be negative"},
		{"sub bad int", sub, []string{"-t", "a", "-C", "x"}, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runClientCmd(t, tt.cmd, "", tt.args...)
			if r.code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "Usage: petrel") {
				t.Fatalf("stderr %q, want %q and the usage", r.stderr, tt.want)
			}
		})
	}
	r := runClientCmd(t, sub, "", "--help")
	if r.code != 0 || !strings.Contains(r.stderr, "Usage: petrel sub") {
		t.Fatalf("--help: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestPubSubDebugAndWill(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	hp := brokerFlags(t, addr)
	wait := startSub(t, b, withArgs(hp, "-C", "1", "-v", "-t", "w")...)
	r := runClientCmd(t, pub, "", withArgs(hp, "-d", "-t", "x", "-m", "y", "-q", "1", "--will-topic", "w", "--will-payload", "bye")...)
	expectResult(t, r, 0, "")
	for _, want := range []string{"msg=sent packet=CONNECT", "msg=received packet=CONNACK", "packet=PUBACK", "packet=DISCONNECT"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("debug output %q lacks %q", r.stderr, want)
		}
	}
	// pub ends with DISCONNECT, so its will is not published; a second
	// message ends the subscriber.
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "-t", "w", "-m", "direct")...), 0, "")
	expectResult(t, wait(), 0, "w direct\n")
}

func TestPubSubTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, cert := selfSignedCert(t, dir)
	b, err := broker.New(broker.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), mqtttest.Timeout)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Error(err)
		}
	})
	hp := brokerFlags(t, ln.Addr().String())
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "--cafile", caFile, "-t", "t", "-m", "secure", "-r")...), 0, "")
	expectResult(t, runClientCmd(t, sub, "", withArgs(hp, "--tls", "--insecure", "-t", "t", "-C", "1")...), 0, "secure\n")
	// Without the CA the certificate does not verify.
	r := runClientCmd(t, pub, "", withArgs(hp, "--tls", "-t", "t", "-m", "x")...)
	if r.code != exitFailure || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("unverified TLS: exit %d stderr %q", r.code, r.stderr)
	}
}

// selfSignedCert writes a self-signed certificate for 127.0.0.1 to dir and
// returns the PEM file name and the certificate with its key.
func selfSignedCert(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "petrel test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	file := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(file, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return file, cert
}

func TestPubSubFormat(t *testing.T) {
	now := time.Unix(1700000000, 5).UTC()
	m := &packet.Publish{Topic: "a/b", Payload: []byte{'h', 0xff}, QoS: 1, Retain: true, PacketID: 42}
	tests := []struct{ format, want string }{
		{"%t %l %q %r %m", "a/b 2 1 1 42"},
		{"%x %X", "68ff 68FF"},
		{`100%%\t%p\n`, "100%\th\xff\n"},
		{"%U", "1700000000.000000005"},
		{"%I", "2023-11-14T22:13:20+0000"},
		{`\\ \e\0`, "\\ \x1b\x00"},
	}
	for _, tt := range tests {
		got, err := appendFormat(nil, tt.format, m, now)
		if err != nil || string(got) != tt.want {
			t.Errorf("format %q = %q, %v; want %q", tt.format, got, err, tt.want)
		}
	}
	for _, bad := range []string{"%", `\`, "%5t", `\q`} {
		if _, err := appendFormat(nil, bad, m, now); err == nil {
			t.Errorf("format %q accepted", bad)
		}
	}
}
