package listener

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tlsListener starts a tls listener with a fresh server certificate.
func tlsListener(t *testing.T, ca *testCA, c Config) *Listener {
	t.Helper()
	c.Type = "tls"
	c.CertFile, c.KeyFile = ca.serverFiles(t, t.TempDir(), "server")
	return listen(t, c)
}

func dialTLS(l *Listener, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", l.Addr().String(), cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func TestTLSHandshake(t *testing.T) {
	ca := newTestCA(t, "ca")
	l := tlsListener(t, ca, Config{})
	a := startAccepting(t, l)
	c, err := dialTLS(l, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := a.next(t, 5*time.Second)
	tc, ok := s.(*tls.Conn)
	if !ok {
		t.Fatalf("accepted %T, want *tls.Conn", s)
	}
	if st := tc.ConnectionState(); !st.HandshakeComplete || st.Version < tls.VersionTLS12 {
		t.Fatalf("state: complete=%v version=%x", st.HandshakeComplete, st.Version)
	}
	echo(t, s)
	roundTrip(t, c, "over tls")
}

func TestTLSMinVersion(t *testing.T) {
	ca := newTestCA(t, "ca")
	tests := []struct {
		min       string
		clientMax uint16
		ok        bool
	}{
		{"", tls.VersionTLS11, false},
		{"", tls.VersionTLS12, true},
		{"1.2", tls.VersionTLS10, false},
		{"1.3", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, true},
	}
	for _, tt := range tests {
		t.Run(tt.min+"/"+tls.VersionName(tt.clientMax), func(t *testing.T) {
			l := tlsListener(t, ca, Config{MinVersion: tt.min})
			a := startAccepting(t, l)
			c, err := dialTLS(l, &tls.Config{RootCAs: ca.pool, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tt.clientMax})
			if !tt.ok {
				if err == nil {
					c.Close()
					t.Fatalf("client with max %s connected", tls.VersionName(tt.clientMax))
				}
				a.none(t, 100*time.Millisecond)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := a.next(t, 5*time.Second)
			if v := s.(*tls.Conn).ConnectionState().Version; v != tt.clientMax {
				t.Fatalf("version %s, want %s", tls.VersionName(v), tls.VersionName(tt.clientMax))
			}
		})
	}
}

func TestTLSClientAuth(t *testing.T) {
	ca := newTestCA(t, "ca")
	other := newTestCA(t, "other")
	good := ca.clientCert(t, "device-1")
	foreign := other.clientCert(t, "intruder")
	tests := []struct {
		auth     string
		cert     *tls.Certificate
		ok       bool
		peerName string // expected verified client CN, "" for none
	}{
		{"none", nil, true, ""},
		{"none", &good, true, ""}, // not requested, so not sent
		{"optional", nil, true, ""},
		{"optional", &good, true, "device-1"},
		{"optional", &foreign, false, ""},
		{"require", nil, false, ""},
		{"require", &good, true, "device-1"},
		{"require", &foreign, false, ""},
	}
	for _, tt := range tests {
		name := tt.auth + "/none"
		if tt.cert != nil {
			name = tt.auth + "/" + tt.cert.Leaf.Subject.CommonName
		}
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(name+"/"+tls.VersionName(version), func(t *testing.T) {
				cfg := Config{ClientAuth: tt.auth}
				if tt.auth != "none" {
					cfg.ClientCAFile = ca.file
				}
				l := tlsListener(t, ca, cfg)
				a := startAccepting(t, l)
				ccfg := &tls.Config{RootCAs: ca.pool, ServerName: "localhost", MaxVersion: version}
				if tt.cert != nil {
					// Always send it: with Certificates, crypto/tls would
					// withhold a certificate from a CA the server did not list.
					ccfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tt.cert, nil }
				}
				c, err := dialTLS(l, ccfg)
				if err == nil {
					defer c.Close()
				}
				if !tt.ok {
					if err == nil {
						// TLS 1.3: the client finishes before the server
						// checks its certificate; the alert comes on read.
						_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
						_, err = c.Read(make([]byte, 1))
						var ne net.Error
						if err == nil || errors.As(err, &ne) && ne.Timeout() {
							t.Fatalf("read after refused handshake = %v, want an alert", err)
						}
					}
					a.none(t, 100*time.Millisecond)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				s := a.next(t, 5*time.Second)
				peers := s.(*tls.Conn).ConnectionState().PeerCertificates
				switch {
				case tt.peerName == "" && len(peers) != 0:
					t.Fatalf("peer certificates %v, want none", peers[0].Subject)
				case tt.peerName != "" && (len(peers) == 0 || peers[0].Subject.CommonName != tt.peerName):
					t.Fatalf("peer certificates %d, want CN %q", len(peers), tt.peerName)
				}
				if tt.peerName != "" && len(s.(*tls.Conn).ConnectionState().VerifiedChains) == 0 {
					t.Fatal("client certificate not verified")
				}
			})
		}
	}
}

func TestTLSReloadCertificates(t *testing.T) {
	ca := newTestCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.serverFiles(t, dir, "server-1")
	l := listen(t, Config{Type: "tls", CertFile: certFile, KeyFile: keyFile})
	a := startAccepting(t, l)
	ccfg := &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}
	serverCN := func(c *tls.Conn) string { return c.ConnectionState().PeerCertificates[0].Subject.CommonName }

	old, err := dialTLS(l, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	echo(t, a.next(t, 5*time.Second))
	if cn := serverCN(old); cn != "server-1" {
		t.Fatalf("server CN %q, want server-1", cn)
	}

	if got, _ := ca.serverFiles(t, dir, "server-2"); got != certFile {
		t.Fatal("serverFiles wrote elsewhere")
	}
	if err := l.ReloadCertificates(); err != nil {
		t.Fatal(err)
	}
	fresh, err := dialTLS(l, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	echo(t, a.next(t, 5*time.Second))
	if cn := serverCN(fresh); cn != "server-2" {
		t.Fatalf("after reload server CN %q, want server-2", cn)
	}
	roundTrip(t, old, "old connection still works")
	roundTrip(t, fresh, "new connection works")

	// A broken reload keeps the previous certificate.
	writeFile(t, keyFile, []byte("garbage"))
	if err := l.ReloadCertificates(); err == nil {
		t.Fatal("reload with a broken key succeeded")
	}
	third, err := dialTLS(l, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	echo(t, a.next(t, 5*time.Second))
	if cn := serverCN(third); cn != "server-2" {
		t.Fatalf("after failed reload server CN %q, want server-2", cn)
	}
	roundTrip(t, old, "still")
}

// TestTLSHandshakeFlood: peers that connect and never finish (or start) a
// handshake must not keep a real client out.
func TestTLSHandshakeFlood(t *testing.T) {
	ca := newTestCA(t, "ca")
	l := tlsListener(t, ca, Config{MaxHandshakes: 50, HandshakeTimeout: 500 * time.Millisecond})
	a := startAccepting(t, l)
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for range 200 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	start := time.Now()
	c, err := dialTLS(l, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("real client during flood: %v", err)
	}
	defer c.Close()
	echo(t, a.next(t, 5*time.Second))
	roundTrip(t, c, "made it")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("real client took %v", d)
	}
	t.Logf("real client connected in %v behind 200 silent connections", time.Since(start))
	// The silent connections are closed by the server once their
	// handshake time is up.
	_ = silent[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent connection read = %v, want EOF", err)
	}
}

// TestTLSCloseAbortsHandshakes: Close does not wait for handshakes to time out.
func TestTLSCloseAbortsHandshakes(t *testing.T) {
	ca := newTestCA(t, "ca")
	certFile, keyFile := ca.serverFiles(t, t.TempDir(), "server")
	l, err := Listen(t.Context(), Config{Type: "tls", Address: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, MaxHandshakes: 2, HandshakeTimeout: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var silent []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	time.Sleep(50 * time.Millisecond) // let the server pick them up
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	_ = silent[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); err == nil {
		t.Fatal("pending connection still open after Close")
	}
}

func TestTLSReloadMissingFile(t *testing.T) {
	ca := newTestCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.serverFiles(t, dir, "server")
	l := listen(t, Config{Type: "tls", CertFile: certFile, KeyFile: keyFile})
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if err := l.ReloadCertificates(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReloadCertificates = %v, want ErrNotExist", err)
	}
}
