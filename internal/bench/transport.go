package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/coder/websocket"
)

// transport is how a run's connections speak to the broker once the TCP
// connection is open. It is made once per run and shared by every
// connection; it holds no per-connection state.
type transport struct {
	kind string      // tcp, tls, ws or wss
	tls  *tls.Config // tls and wss
	url  string      // ws and wss: the endpoint, e.g. ws://127.0.0.1:8080/mqtt
}

// newTransport checks c's transport settings and loads its CA file; nil
// for plain TCP.
func newTransport(c *Config) (*transport, error) {
	t := &transport{kind: c.Transport}
	switch c.Transport {
	case "tcp":
		return nil, nil
	case "tls", "ws", "wss":
	default:
		return nil, fmt.Errorf("%w: transport %q (want tcp, tls, ws or wss)", ErrConfig, c.Transport)
	}
	if c.Transport != "ws" {
		// No session cache: every connection makes a full handshake, so
		// the conns scenario over TLS counts handshakes.
		t.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
		if t.tls.ServerName == "" {
			t.tls.ServerName = c.Host
		}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%w: CA file: %v", ErrConfig, err)
			}
			t.tls.RootCAs = x509.NewCertPool()
			if !t.tls.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: CA file %s: no PEM certificate", ErrConfig, c.CAFile)
			}
		}
	}
	if c.Transport != "tls" {
		scheme := "ws"
		if c.Transport == "wss" {
			scheme = "wss"
		}
		t.url = scheme + "://" + net.JoinHostPort(c.Host, fmt.Sprint(c.Port)) + c.WSPath
	}
	return t, nil
}

// open runs the transport's handshakes over tc, a new TCP connection to
// the broker, and returns the connection MQTT is spoken on. ctx bounds
// the handshakes only. On error tc is closed.
func (t *transport) open(ctx context.Context, tc *net.TCPConn) (net.Conn, error) {
	var nc net.Conn = tc
	if t.tls != nil {
		sc := tls.Client(tc, t.tls)
		if err := sc.HandshakeContext(ctx); err != nil {
			_ = tc.Close() // the handshake error is the one to report
			return nil, fmt.Errorf("bench: TLS handshake: %w", err)
		}
		nc = sc
	}
	if t.url == "" {
		return nc, nil
	}
	// The HTTP client hands the upgrade request the connection opened
	// above (TLS done already for wss) instead of dialling its own.
	given := func(context.Context, string, string) (net.Conn, error) { return nc, nil }
	hc := &http.Client{Transport: &http.Transport{DialContext: given, DialTLSContext: given, DisableKeepAlives: true}}
	ws, _, err := websocket.Dial(ctx, t.url, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{"mqtt"}})
	if err != nil {
		_ = nc.Close() // the upgrade error is the one to report
		return nil, fmt.Errorf("bench: WebSocket upgrade: %w", err)
	}
	if ws.Subprotocol() != "mqtt" {
		_ = ws.CloseNow() // the refusal is the one to report
		return nil, fmt.Errorf("bench: WebSocket upgrade: the broker chose subprotocol %q, not mqtt", ws.Subprotocol())
	}
	// The connection lives until the run closes it, past ctx.
	return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
}
