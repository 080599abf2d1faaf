package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "ca.pem")
	for _, f := range []string{cert, key, ca} {
		writeFile(t, f, []byte("x"))
	}
	tlsOK := Config{Type: "tls", Address: ":8883", CertFile: cert, KeyFile: key}
	with := func(c Config, f func(*Config)) Config { f(&c); return c }
	tests := []struct {
		name    string
		c       Config
		wantErr string // substring; "" = valid
	}{
		{"tcp", Config{Type: "tcp", Address: "127.0.0.1:1883"}, ""},
		{"ws defaults", Config{Type: "ws", Address: ":8080"}, ""},
		{"tls", tlsOK, ""},
		{"tls require", with(tlsOK, func(c *Config) { c.ClientAuth = "require"; c.ClientCAFile = ca; c.MinVersion = "1.3" }), ""},
		{"missing type", Config{Address: ":1"}, "type: missing"},
		{"bad type", Config{Type: "quic", Address: ":1"}, `type: "quic" unknown`},
		{"missing address", Config{Type: "tcp"}, "address: missing"},
		{"bad address", Config{Type: "tcp", Address: "localhost"}, "address:"},
		{"no port", Config{Type: "tcp", Address: "localhost:"}, "has no port"},
		{"negative timeout", Config{Type: "tcp", Address: ":1", HandshakeTimeout: -1}, "handshake_timeout"},
		{"negative max", Config{Type: "tcp", Address: ":1", MaxHandshakes: -1}, "max_handshakes"},
		{"tls no cert", with(tlsOK, func(c *Config) { c.CertFile = "" }), "cert_file: missing"},
		{"tls no key", with(tlsOK, func(c *Config) { c.KeyFile = "" }), "key_file: missing"},
		{"tls cert absent", with(tlsOK, func(c *Config) { c.CertFile = filepath.Join(dir, "nope") }), "cert_file:"},
		{"tls bad version", with(tlsOK, func(c *Config) { c.MinVersion = "1.1" }), "min_version"},
		{"tls bad auth", with(tlsOK, func(c *Config) { c.ClientAuth = "maybe" }), "client_auth"},
		{"tls auth without ca", with(tlsOK, func(c *Config) { c.ClientAuth = "optional" }), "client_ca_file: missing"},
		{"tcp with cert", Config{Type: "tcp", Address: ":1", CertFile: cert}, "cert_file: only valid"},
		{"tcp with path", Config{Type: "tcp", Address: ":1", Path: "/x"}, "path: only valid"},
		{"tls with origin", with(tlsOK, func(c *Config) { c.CheckOrigin = []string{"x"} }), "check_origin: only valid"},
		{"tcp with upgrade bounds", Config{Type: "tcp", Address: ":1", MaxUpgrades: 5}, "max_upgrades"},
		{"negative upgrade timeout", Config{Type: "ws", Address: ":1", UpgradeTimeout: -1}, "upgrade_timeout"},
		{"tcp with trusted proxies", Config{Type: "tcp", Address: ":1", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "trusted_proxies"},
		{"ws bad path", Config{Type: "ws", Address: ":1", Path: "mqtt"}, "path:"},
		{"ws empty origin", Config{Type: "ws", Address: ":1", CheckOrigin: []string{" "}}, "check_origin[0]"},
		{"wss no cert", Config{Type: "wss", Address: ":1"}, "cert_file: missing"},
		{"tls hello and per-address bounds", with(tlsOK, func(c *Config) { c.HelloTimeout = time.Second; c.MaxHandshakesPerAddress = 8 }), ""},
		{"negative hello timeout", with(tlsOK, func(c *Config) { c.HelloTimeout = -1 }), "hello_timeout"},
		{"negative per-address max", with(tlsOK, func(c *Config) { c.MaxHandshakesPerAddress = -1 }), "max_handshakes_per_address"},
		{"tcp with hello timeout", Config{Type: "tcp", Address: ":1", HelloTimeout: time.Second}, "hello_timeout: only valid"},
		{"ws with per-address max", Config{Type: "ws", Address: ":1", MaxHandshakesPerAddress: 4}, "max_handshakes_per_address: only valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate() = %v, want ErrConfig containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestListenInvalid(t *testing.T) {
	if _, err := Listen(t.Context(), Config{Type: "udp", Address: "127.0.0.1:0"}, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("Listen = %v, want ErrConfig", err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeFile(t, cert, []byte("not a cert"))
	writeFile(t, key, []byte("not a key"))
	if _, err := Listen(t.Context(), Config{Type: "tls", Address: "127.0.0.1:0", CertFile: cert, KeyFile: key}, nil); err == nil {
		t.Fatal("Listen with a bad certificate succeeded")
	}
}

func TestTCPEcho(t *testing.T) {
	l := listen(t, Config{Type: "tcp"})
	if l.Addr().Network() != "tcp" {
		t.Fatalf("Addr network = %q", l.Addr().Network())
	}
	if err := l.ReloadCertificates(); err == nil {
		t.Fatal("ReloadCertificates on tcp succeeded")
	}
	a := startAccepting(t, l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := a.next(t, 5*time.Second)
	echo(t, s)
	roundTrip(t, c, "hello")
	roundTrip(t, c, "world")
}

func TestCloseUnblocksAccept(t *testing.T) {
	for _, typ := range []string{"tcp", "tls", "ws", "wss"} {
		t.Run(typ, func(t *testing.T) {
			c := Config{Type: typ, Address: "127.0.0.1:0"}
			if c.isTLS() {
				ca := newTestCA(t, "ca")
				c.CertFile, c.KeyFile = ca.serverFiles(t, t.TempDir(), "server")
			}
			l, err := Listen(t.Context(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				_, err := l.Accept()
				errc <- err
			}()
			time.Sleep(20 * time.Millisecond) // let Accept block (not required for correctness)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Accept still blocked after Close")
			}
			if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("second Accept = %v, want net.ErrClosed", err)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("second Close = %v", err)
			}
		})
	}
}

// TestNoDeadlineAfterHandshake: the handshake timeout does not limit the
// life of an established connection.
func TestNoDeadlineAfterHandshake(t *testing.T) {
	ca := newTestCA(t, "ca")
	for _, typ := range []string{"tls", "ws", "wss"} {
		t.Run(typ, func(t *testing.T) {
			c := Config{Type: typ, HandshakeTimeout: 100 * time.Millisecond}
			if c.isTLS() {
				c.CertFile, c.KeyFile = ca.serverFiles(t, t.TempDir(), "server")
			}
			l := listen(t, c)
			a := startAccepting(t, l)
			var client net.Conn
			switch typ {
			case "tls":
				tc, err := dialTLS(l, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
				if err != nil {
					t.Fatal(err)
				}
				defer tc.Close()
				client = tc
			default:
				tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}}
				wc, _, err := wsDial(t, l, "/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: &http.Client{Transport: tr}})
				if err != nil {
					t.Fatal(err)
				}
				client = websocket.NetConn(context.Background(), wc, websocket.MessageBinary)
			}
			echo(t, a.next(t, 5*time.Second))
			time.Sleep(300 * time.Millisecond) // well past HandshakeTimeout
			roundTrip(t, client, "still here")
		})
	}
}
