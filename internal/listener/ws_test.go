package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsDial dials l's WebSocket endpoint. The response is returned on failure
// too, for its status.
func wsDial(t *testing.T, l *Listener, path string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{Subprotocols: []string{"mqtt"}}
	}
	tr := &http.Transport{}
	scheme := "ws"
	if l.Config().Type == "wss" {
		scheme = "wss"
		if opts.HTTPClient != nil {
			tr = opts.HTTPClient.Transport.(*http.Transport)
		}
	}
	t.Cleanup(tr.CloseIdleConnections)
	opts.HTTPClient = &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, scheme+"://"+l.Addr().String()+path, opts)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close() // test: body unused
	}
	if err == nil {
		t.Cleanup(func() { _ = c.CloseNow() }) // teardown
	}
	return c, resp, err
}

func wsWrite(t *testing.T, c *websocket.Conn, typ websocket.MessageType, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, b); err != nil {
		t.Fatalf("ws write: %v", err)
	}
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf
}

// TestWSStream: packets split across frames and packed into one frame reach
// the server as one intact byte stream [MQTT-6.0.0-2].
func TestWSStream(t *testing.T) {
	l := listen(t, Config{Type: "ws"})
	a := startAccepting(t, l)
	c, _, err := wsDial(t, l, "/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subprotocol() != "mqtt" {
		t.Fatalf("subprotocol %q, want mqtt", c.Subprotocol())
	}
	s := a.next(t, 5*time.Second)
	if sp := s.(interface{ Subprotocol() string }).Subprotocol(); sp != "mqtt" {
		t.Fatalf("server subprotocol %q", sp)
	}
	if _, ok := s.(interface{ ConnectionState() tls.ConnectionState }); ok {
		t.Fatal("plain ws conn claims a TLS state")
	}
	if ip := s.RemoteAddr().(*net.TCPAddr).IP.String(); ip != "127.0.0.1" {
		t.Fatalf("remote %v", s.RemoteAddr())
	}

	// A PINGREQ split over three frames, then three packets in one frame.
	connect := []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00}
	frames := [][]byte{connect[:1], connect[1:5], connect[5:], {0xc0, 0x00, 0xc0, 0x00, 0xe0, 0x00}}
	var want []byte
	for _, f := range frames {
		wsWrite(t, c, websocket.MessageBinary, f)
		want = append(want, f...)
	}
	if got := readN(t, s, len(want)); string(got) != string(want) {
		t.Fatalf("server read % x, want % x", got, want)
	}

	// Server writes arrive as binary messages.
	if _, err := s.Write([]byte{0x20, 0x02, 0x00, 0x00}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, msg, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageBinary || string(msg) != "\x20\x02\x00\x00" {
		t.Fatalf("client read %v % x %v", typ, msg, err)
	}

	// A normal close from the client is EOF on the server (whose reading
	// also answers the close handshake).
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	readErr := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 1))
		readErr <- err
	}()
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; err != io.EOF {
		t.Fatalf("read after close = %v, want EOF", err)
	}
}

func TestWSSubprotocols(t *testing.T) {
	l := listen(t, Config{Type: "ws"})
	a := startAccepting(t, l)
	tests := []struct {
		offer []string
		want  string // "" = refused
	}{
		{[]string{"mqtt"}, "mqtt"},
		{[]string{"mqttv3.1"}, "mqttv3.1"},
		{[]string{"mqttv3.1", "mqtt"}, "mqtt"},
		{[]string{"chat", "MQTT"}, "MQTT"},
		{[]string{"chat"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		c, resp, err := wsDial(t, l, "/mqtt", &websocket.DialOptions{Subprotocols: tt.offer})
		if tt.want == "" {
			if err == nil {
				t.Fatalf("offer %q: accepted with %q", tt.offer, c.Subprotocol())
			}
			if resp == nil || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("offer %q: response %v, want 400", tt.offer, resp)
			}
			continue
		}
		if err != nil {
			t.Fatalf("offer %q: %v", tt.offer, err)
		}
		if c.Subprotocol() != tt.want {
			t.Fatalf("offer %q: got %q, want %q", tt.offer, c.Subprotocol(), tt.want)
		}
		a.next(t, 5*time.Second)
	}
	a.none(t, 50*time.Millisecond)
}

// TestWSTextFrameCloses: a text frame closes the connection [MQTT-6.0.0-1].
func TestWSTextFrameCloses(t *testing.T) {
	l := listen(t, Config{Type: "ws"})
	a := startAccepting(t, l)
	c, _, err := wsDial(t, l, "/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := a.next(t, 5*time.Second)
	// The client reads meanwhile, so that it answers the server's close.
	clientErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, err := c.Read(ctx)
		clientErr <- err
	}()
	wsWrite(t, c, websocket.MessageText, []byte("hello"))
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := s.Read(make([]byte, 16)); err == nil {
		t.Fatalf("server read %d bytes of a text frame", n)
	}
	err = <-clientErr
	if st := websocket.CloseStatus(err); st != websocket.StatusUnsupportedData {
		t.Fatalf("client read after text frame = %v (status %v), want close 1003", err, st)
	}
}

func TestWSPath(t *testing.T) {
	l := listen(t, Config{Type: "ws", Path: "/custom"})
	a := startAccepting(t, l)
	if _, resp, err := wsDial(t, l, "/mqtt", nil); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("dial wrong path: err=%v resp=%v, want 404", err, resp)
	}
	if _, _, err := wsDial(t, l, "/custom", nil); err != nil {
		t.Fatal(err)
	}
	a.next(t, 5*time.Second)
}

func TestWSOrigin(t *testing.T) {
	tests := []struct {
		allowed []string
		origin  string
		ok      bool
	}{
		{nil, "https://anything.example", true},
		{[]string{"https://app.example"}, "https://app.example", true},
		{[]string{"https://app.example"}, "https://APP.example/", true},
		{[]string{"https://app.example"}, "http://app.example", false},
		{[]string{"https://app.example"}, "https://evil.example", false},
		{[]string{"app.example:8443"}, "https://app.example:8443", true},
		{[]string{"app.example"}, "https://evil.example", false},
		{[]string{"https://app.example"}, "", true}, // non-browser client
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			l := listen(t, Config{Type: "ws", CheckOrigin: tt.allowed})
			a := startAccepting(t, l)
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			_, resp, err := wsDial(t, l, "/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPHeader: h})
			if !tt.ok {
				if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("origin %q allowed by %q: err=%v", tt.origin, tt.allowed, err)
				}
				a.none(t, 50*time.Millisecond)
				return
			}
			if err != nil {
				t.Fatalf("origin %q refused by %q: %v", tt.origin, tt.allowed, err)
			}
			a.next(t, 5*time.Second)
		})
	}
}

// TestWSForwardedFor: X-Forwarded-For names the connection's remote
// address (what the broker's per-address limits key on) only for an
// upgrade from a trusted proxy, read from the right: entries left of the
// first untrusted address are the client's to forge. A peer that is not
// a trusted proxy (here 127.0.0.1 with only 10.0.0.0/8 trusted) is its
// own address whatever it sends.
func TestWSForwardedFor(t *testing.T) {
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	loopAnd10 := append([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, loop...)
	tests := []struct {
		name    string
		proxies []netip.Prefix
		header  []string
		want    string
	}{
		{"no trusted proxies", nil, []string{"203.0.113.9"}, "127.0.0.1"},
		{"peer not trusted", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []string{"203.0.113.9"}, "127.0.0.1"},
		{"trusted, no header", loop, nil, "127.0.0.1"},
		{"trusted", loop, []string{"203.0.113.9"}, "203.0.113.9"},
		{"forged entries left of the client", loop, []string{"198.51.100.1, 203.0.113.9"}, "203.0.113.9"},
		{"two header lines", loop, []string{"198.51.100.1", "203.0.113.10"}, "203.0.113.10"},
		{"chain of trusted proxies", loopAnd10, []string{"203.0.113.5, 10.1.2.3", "10.9.9.9"}, "203.0.113.5"},
		{"v6 with port", loop, []string{"[2001:db8::1]:4711"}, "2001:db8::1"},
		{"v6", loop, []string{"2001:db8::2"}, "2001:db8::2"},
		{"garbage", loop, []string{"not an address"}, "127.0.0.1"},
	}
	for _, tt := range tests {
		l := listen(t, Config{Type: "ws", TrustedProxies: tt.proxies})
		a := startAccepting(t, l)
		h := http.Header{}
		for _, v := range tt.header {
			h.Add("X-Forwarded-For", v)
		}
		if _, _, err := wsDial(t, l, "/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPHeader: h}); err != nil {
			t.Fatal(err)
		}
		ra := a.next(t, 5*time.Second).RemoteAddr().(*net.TCPAddr).AddrPort()
		if got := ra.Addr().String(); got != tt.want {
			t.Errorf("%s: header %q: remote %v, want %s", tt.name, tt.header, ra, tt.want)
		}
	}
}

// TestWSS: WebSocket over TLS with a required client certificate; the
// accepted conn exposes the TLS state.
func TestWSS(t *testing.T) {
	ca := newTestCA(t, "ca")
	certFile, keyFile := ca.serverFiles(t, t.TempDir(), "server")
	l := listen(t, Config{Type: "wss", CertFile: certFile, KeyFile: keyFile, ClientAuth: "require", ClientCAFile: ca.file})
	a := startAccepting(t, l)
	client := ca.clientCert(t, "device-7")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "localhost", Certificates: []tls.Certificate{client}}}
	c, _, err := wsDial(t, l, "/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	s := a.next(t, 5*time.Second)
	cs, ok := s.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		t.Fatalf("wss conn %T has no ConnectionState", s)
	}
	if p := cs.ConnectionState().PeerCertificates; len(p) == 0 || p[0].Subject.CommonName != "device-7" {
		t.Fatalf("peer certificates %v", p)
	}
	wsWrite(t, c, websocket.MessageBinary, []byte{0xc0, 0x00})
	if got := readN(t, s, 2); string(got) != "\xc0\x00" {
		t.Fatalf("read % x", got)
	}

	// Without a client certificate the TLS handshake fails.
	tr2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}}
	if _, _, err := wsDial(t, l, "/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: &http.Client{Transport: tr2}}); err == nil {
		t.Fatal("wss dial without a client certificate succeeded")
	}

	if err := l.ReloadCertificates(); err != nil {
		t.Fatalf("wss reload: %v", err)
	}
}

// TestWSClosePending: Close closes upgraded connections nobody accepted.
func TestWSClosePending(t *testing.T) {
	l, err := Listen(t.Context(), Config{Type: "ws", Address: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := wsDial(t, l, "/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pending connection read = %v, want closed", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v", err)
	}
}
