package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/petrel-mqtt/petrel/packet"
)

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	remote := filepath.Join(dir, "remote.yaml")
	write(t, good, "listeners: [{type: tcp, address: '127.0.0.1:1883'}]\n")
	write(t, bad, "listeners:\n  - type: tcp\n    address: 127.0.0.1:1883\n  - type: tls\n    address: 127.0.0.1:8883\n    tls: {cert_fil: x}\n")
	write(t, remote, "listeners: [{type: tcp, address: '0.0.0.0:1883'}]\n")
	old := filepath.Join(dir, "old.yaml")
	write(t, old, "listeners: [{type: tcp, address: '127.0.0.1:1883'}]\nruntime: {cpu_warming: true}\n")
	xff := filepath.Join(dir, "xff.yaml")
	write(t, xff, "listeners:\n  - {type: ws, address: '127.0.0.1:8080', websocket: {trust_forwarded_for: true}}\n")
	tests := []struct {
		name, file string
		code       int
		want       string
	}{
		{"valid", good, 0, "ok (1 listeners)"},
		{"removed key: a warning, still valid", old, 0, "warning: runtime.cpu_warming (line 2): removed setting, ignored"},
		{"trust_forwarded_for without trusted_proxies: a warning, still valid", xff, 0,
			"warning: listeners[0].websocket.trust_forwarded_for (line 2): deprecated: X-Forwarded-For is now believed only from"},
		{"unknown key named by path", bad, 1, "listeners[1].tls.cert_fil: unknown key"},
		{"anonymous on a public address", remote, 1, "not a loopback address"},
		{"missing file", filepath.Join(dir, "none.yaml"), 1, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run([]string{"check", "--config", tt.file}, &out, &errb)
			if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
				t.Fatalf("exit %d, output %q %q; want exit %d containing %q", code, out.String(), errb.String(), tt.code, tt.want)
			}
		})
	}
}

// TestServeFromConfig builds petrel, starts it from a file with tcp, tls and
// ws listeners, connects over each, reloads on SIGHUP and stops on SIGTERM.
func TestServeFromConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, bin := buildPetrel(t)
	certPool := writeCert(t, dir)
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, `
log: {level: info, format: text}
store: {data_dir: `+filepath.Join(dir, "data")+`}
listeners:
  - {name: plain, type: tcp, address: "127.0.0.1:0"}
  - name: secure
    type: tls
    address: "127.0.0.1:0"
    tls: {cert_file: `+filepath.Join(dir, "cert.pem")+`, key_file: `+filepath.Join(dir, "key.pem")+`}
  - {name: web, type: ws, address: "127.0.0.1:0", websocket: {trust_forwarded_for: true}}
runtime: {cpu_warming: true}
`)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	logs := startServe(t, cmd)
	addrs := waitFor(t, logs, 3)
	// A key an earlier version had is logged and ignored, not refused.
	waitLog(t, logs, `level=WARN msg="configuration: runtime.cpu_warming (line 11): removed setting, ignored`)
	// So is trust_forwarded_for without trusted_proxies: it starts,
	// trusting loopback peers only.
	waitLog(t, logs, `level=WARN msg="configuration: listeners[2].websocket.trust_forwarded_for (line 10): deprecated`)

	connack := func(t *testing.T, nc net.Conn) {
		t.Helper()
		buf, _ := (&packet.Connect{ClientID: "c", CleanStart: true}).Append(nil, packet.V311)
		if _, err := nc.Write(buf); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, err := packet.ReadPacket(nc, packet.V311, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ack, ok := p.(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
			t.Fatalf("got %v, want CONNACK success", p)
		}
		nc.Close()
	}
	nc, err := net.Dial("tcp", addrs["plain"])
	if err != nil {
		t.Fatal(err)
	}
	connack(t, nc)
	tc, err := tls.Dial("tcp", addrs["secure"], &tls.Config{RootCAs: certPool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	connack(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addrs["web"]+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	connack(t, websocket.NetConn(ctx, ws, websocket.MessageBinary))

	// SIGHUP: certificates reload, a changed limit applies, a changed
	// listener is reported as needing a restart.
	before, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	write(t, cfg, strings.Replace(string(before), "name: web", "name: webby", 1)+"limits: {max_connections: 1}\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, `msg="certificates reloaded" listener=secure`)
	waitLog(t, logs, `msg="limit changed" key=limits.max_connections`)
	waitLog(t, logs, `msg="setting changed; it takes effect after a restart" key=listeners`)
	one, err := net.Dial("tcp", addrs["plain"])
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	buf, _ := (&packet.Connect{ClientID: "first", CleanStart: true}).Append(nil, packet.V311)
	one.Write(buf)
	if p, err := packet.ReadPacket(one, packet.V311, 0); err != nil || p.(*packet.Connack).ReasonCode != packet.Success {
		t.Fatalf("first client: %v %v", p, err)
	}
	two, err := net.Dial("tcp", addrs["plain"])
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	buf, _ = (&packet.Connect{ClientID: "second", CleanStart: true}).Append(nil, packet.V311)
	two.Write(buf)
	if p, err := packet.ReadPacket(two, packet.V311, 0); err != nil || p.(*packet.Connack).ReasonCode != packet.ServerUnavailable {
		t.Fatalf("second client after max_connections 1 was reloaded: %v %v, want refusal", p, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("petrel serve exited with %v after SIGTERM\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), `msg="client connected" audit=connect tenant="" client=c`) {
		t.Fatalf("no connect log line:\n%s", logs.String())
	}
}

// buildPetrel builds the petrel binary into a new temporary directory and
// returns the directory and the binary.
func buildPetrel(t *testing.T) (dir, bin string) {
	t.Helper()
	dir = t.TempDir()
	bin = filepath.Join(dir, "petrel")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir, bin
}

// startServe starts cmd (a petrel serve) with its standard error in the
// returned buffer, and ends it when the test ends if it still runs.
func startServe(t *testing.T, cmd *exec.Cmd) *cmdOutput {
	t.Helper()
	logs := &cmdOutput{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // already exited on success
	return logs
}

var listenRE = regexp.MustCompile(`msg="petrel listening".* listener=(\S+) .*addr=(\S+)`)

func waitFor(t *testing.T, logs *cmdOutput, n int) map[string]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		addrs := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				addrs[m[1]] = m[2]
			}
		}
		if len(addrs) == n {
			return addrs
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("listeners did not start:\n%s", logs.String())
	return nil
}

func waitLog(t *testing.T, logs *cmdOutput, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log line %q not seen:\n%s", s, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeCert writes a self-signed certificate for localhost and its key into
// dir and returns a pool trusting it.
func writeCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "cert.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	write(t, filepath.Join(dir, "key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}
