// Package listener provides the transports Petrel accepts clients on: plain
// TCP, TLS, WebSocket and secure WebSocket. Each produces a net.Listener whose
// Accept returns ready byte streams; the package knows nothing of MQTT beyond
// the WebSocket subprotocol names.
//
// TLS handshakes run in the background, bounded in number, per remote
// address and in time, so a slow or malicious peer never holds up Accept
// for others: at the bound the oldest unfinished handshake makes room for a
// new one. Certificates can be
// reloaded (on SIGHUP, say) without dropping established connections.
package listener

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/petrel-mqtt/petrel/internal/transport"
)

// Transport types accepted in Config.Type.
const (
	TypeTCP = "tcp" // plain TCP
	TypeTLS = "tls" // TLS over TCP
	TypeWS  = "ws"  // WebSocket over HTTP
	TypeWSS = "wss" // WebSocket over HTTPS
)

// Defaults applied by Listen to zero Config fields.
const (
	DefaultHandshakeTimeout        = 10 * time.Second
	DefaultHelloTimeout            = 3 * time.Second
	DefaultMaxHandshakes           = 1024
	DefaultMaxHandshakesPerAddress = 64
	DefaultPath                    = "/mqtt"
	DefaultUpgradeRequestTimeout   = 3 * time.Second
	DefaultUpgradeTimeout          = 10 * time.Second
	DefaultMaxUpgrades             = 1024
	DefaultMaxUpgradesPerAddress   = 64
	DefaultMinVersion              = "1.2"
	DefaultClientAuth              = "none"
)

// ErrConfig is wrapped by every error Validate returns.
var ErrConfig = errors.New("listener: invalid config")

// Config describes one listener. The zero value of every optional field
// selects the documented default.
type Config struct {
	// Name identifies the listener in logs, e.g. "tcp" or "tls-public".
	Name string
	// Type is the transport: "tcp", "tls", "ws" or "wss".
	Type string
	// Address is the host:port to listen on; port 0 picks a free port.
	Address string

	// CertFile and KeyFile are the PEM server certificate (chain) and key
	// (tls and wss only; required there).
	CertFile, KeyFile string
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or "1.3".
	MinVersion string
	// ClientAuth selects client certificate checking: "none" (default),
	// "optional" (verified when presented) or "require".
	ClientAuth string
	// ClientCAFile holds the PEM CA certificates that client certificates
	// must chain to; required when ClientAuth is not "none".
	ClientCAFile string
	// HandshakeTimeout bounds a TLS handshake, from accept (and the PROXY
	// protocol header). Default 10s. WebSocket upgrades have their own
	// bounds (UpgradeRequestTimeout, UpgradeTimeout).
	HandshakeTimeout time.Duration
	// HelloTimeout bounds the time from accept to a complete TLS
	// ClientHello, the PROXY protocol header included (tls, wss only): a
	// connection that has not sent one by then is closed. The rest of the
	// handshake has until HandshakeTimeout. Default 3s; never more than
	// HandshakeTimeout.
	HelloTimeout time.Duration
	// MaxHandshakes bounds the TLS handshakes in progress at once. Default
	// 1024. A new connection never waits for a slot: at the bound the
	// oldest connection that has not sent a complete ClientHello (else the
	// oldest unfinished one) is closed to make room.
	MaxHandshakes int
	// MaxHandshakesPerAddress bounds the unfinished TLS handshakes of one
	// remote address (an IPv4 address, an IPv6 /64; the PROXY protocol
	// header's address when ProxyProtocol is set) (tls, wss only). A
	// connection over it is closed on arrival. Default 64; never more than
	// MaxHandshakes, which turns the bound off.
	MaxHandshakesPerAddress int

	// Path is the HTTP path WebSocket upgrades are served on (ws, wss).
	// Default "/mqtt".
	Path string
	// CheckOrigin lists the allowed Origin header values, e.g.
	// "https://app.example.com" (compared case-insensitively; an entry without
	// "://" matches the Origin's host only). Empty allows every origin.
	// Requests without an Origin header (non-browser clients) are allowed.
	CheckOrigin []string
	// UpgradeRequestTimeout bounds the time from the hand-off to the HTTP
	// server (accept; after the TLS handshake on wss) to a complete
	// upgrade request header (ws, wss). Default 3s; never more than
	// UpgradeTimeout.
	UpgradeRequestTimeout time.Duration
	// UpgradeTimeout bounds the whole WebSocket upgrade, from the hand-off
	// (ws, wss). Default 10s.
	UpgradeTimeout time.Duration
	// MaxUpgrades bounds the pending WebSocket upgrades at once (ws, wss).
	// Default 1024. A new connection never waits: at the bound the oldest
	// connection whose request header is not complete (else the oldest
	// pending) is closed to make room.
	MaxUpgrades int
	// MaxUpgradesPerAddress bounds the pending upgrades of one remote
	// address (an IPv4 address, an IPv6 /64) (ws, wss); peers in
	// TrustedProxies are not counted. A connection over it is closed on
	// arrival. Default 64; never more than MaxUpgrades, which turns the
	// bound off.
	MaxUpgradesPerAddress int

	// TrustedProxies are the reverse proxies (ws, wss) whose
	// X-Forwarded-For header names the client: for an upgrade from one of
	// them the header is read from the right and the first address that is
	// not a trusted proxy becomes the connection's remote address
	// (clientaddr.FromRequest), which the broker's per-address limits and
	// logs use. From any other peer the header is ignored. Empty: the TCP
	// peer is the client.
	TrustedProxies []netip.Prefix

	// ProxyProtocol requires a PROXY protocol v1 or v2 header (as sent by
	// HAProxy, AWS NLB and other load balancers) at the start of every
	// connection and takes the client's address from it. A connection
	// without one fails. The header must arrive within HandshakeTimeout
	// (HelloTimeout on tls and wss listeners, where it counts from accept).
	ProxyProtocol bool

	// CertUsername makes a verified client certificate name the client:
	// "cn" takes its subject common name, "subject" its whole subject
	// (RFC 2253 form), "" or "none" leaves the CONNECT username alone. The
	// broker asks through the listener's CertUsername method.
	CertUsername string
}

func (c Config) isTLS() bool { return c.Type == TypeTLS || c.Type == TypeWSS }
func (c Config) isWS() bool  { return c.Type == TypeWS || c.Type == TypeWSS }

// Validate checks c without touching the network or the file system beyond
// checking that named files exist. Its errors wrap ErrConfig and name the
// offending field.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		name := c.Name
		if name == "" {
			name = c.Type
		}
		return fmt.Errorf("%w: listener %q: %s: %s", ErrConfig, name, field, fmt.Sprintf(format, args...))
	}
	switch c.Type {
	case TypeTCP, TypeTLS, TypeWS, TypeWSS:
	case "":
		return bad("type", "missing; want one of tcp, tls, ws, wss")
	default:
		return bad("type", "%q unknown; want one of tcp, tls, ws, wss", c.Type)
	}
	if c.Address == "" {
		return bad("address", "missing; want host:port")
	}
	if _, port, err := net.SplitHostPort(c.Address); err != nil {
		return bad("address", "%q is not host:port: %v", c.Address, err)
	} else if port == "" {
		return bad("address", "%q has no port", c.Address)
	}
	if c.HandshakeTimeout < 0 {
		return bad("handshake_timeout", "%v is negative", c.HandshakeTimeout)
	}
	if c.MaxHandshakes < 0 {
		return bad("max_handshakes", "%d is negative", c.MaxHandshakes)
	}
	if c.HelloTimeout < 0 {
		return bad("hello_timeout", "%v is negative", c.HelloTimeout)
	}
	if c.MaxHandshakesPerAddress < 0 {
		return bad("max_handshakes_per_address", "%d is negative", c.MaxHandshakesPerAddress)
	}
	for _, f := range []struct {
		field string
		neg   bool
	}{
		{"upgrade_request_timeout", c.UpgradeRequestTimeout < 0}, {"upgrade_timeout", c.UpgradeTimeout < 0},
		{"max_upgrades", c.MaxUpgrades < 0}, {"max_upgrades_per_address", c.MaxUpgradesPerAddress < 0},
	} {
		if f.neg {
			return bad(f.field, "is negative")
		}
	}
	if c.isTLS() {
		if err := c.validateTLS(bad); err != nil {
			return err
		}
	} else {
		tlsOnly := []struct{ field, v string }{
			{"cert_file", c.CertFile}, {"key_file", c.KeyFile}, {"client_ca_file", c.ClientCAFile},
			{"min_version", c.MinVersion}, {"client_auth", c.ClientAuth},
		}
		for _, f := range tlsOnly {
			if f.v != "" {
				return bad(f.field, "only valid for tls and wss listeners")
			}
		}
		if c.HelloTimeout != 0 {
			return bad("hello_timeout", "only valid for tls and wss listeners")
		}
		if c.MaxHandshakesPerAddress != 0 {
			return bad("max_handshakes_per_address", "only valid for tls and wss listeners")
		}
	}
	if c.isWS() {
		if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
			return bad("path", "%q must start with /", c.Path)
		}
	} else {
		if c.Path != "" {
			return bad("path", "only valid for ws and wss listeners")
		}
		if len(c.CheckOrigin) > 0 {
			return bad("check_origin", "only valid for ws and wss listeners")
		}
		if len(c.TrustedProxies) > 0 {
			return bad("trusted_proxies", "only valid for ws and wss listeners")
		}
		for _, f := range []struct {
			field string
			set   bool
		}{
			{"upgrade_request_timeout", c.UpgradeRequestTimeout != 0}, {"upgrade_timeout", c.UpgradeTimeout != 0},
			{"max_upgrades", c.MaxUpgrades != 0}, {"max_upgrades_per_address", c.MaxUpgradesPerAddress != 0},
		} {
			if f.set {
				return bad(f.field, "only valid for ws and wss listeners")
			}
		}
	}
	for i, o := range c.CheckOrigin {
		if strings.TrimSpace(o) == "" {
			return bad(fmt.Sprintf("check_origin[%d]", i), "empty")
		}
	}
	return nil
}

func (c Config) validateTLS(bad func(field, format string, args ...any) error) error {
	if c.CertFile == "" {
		return bad("cert_file", "missing; required for %s", c.Type)
	}
	if c.KeyFile == "" {
		return bad("key_file", "missing; required for %s", c.Type)
	}
	if _, err := tlsVersion(c.MinVersion); err != nil {
		return bad("min_version", "%v", err)
	}
	auth, err := clientAuth(c.ClientAuth)
	if err != nil {
		return bad("client_auth", "%v", err)
	}
	if auth != 0 && c.ClientCAFile == "" {
		return bad("client_ca_file", "missing; required when client_auth is %q", c.ClientAuth)
	}
	switch c.CertUsername {
	case "", "none", "cn", "subject":
	default:
		return bad("cert_username", "%q is not one of none, cn, subject", c.CertUsername)
	}
	if c.CertUsername == "cn" || c.CertUsername == "subject" {
		if auth == 0 {
			return bad("cert_username", "needs client_auth optional or require")
		}
	}
	files := []struct{ field, path string }{{"cert_file", c.CertFile}, {"key_file", c.KeyFile}, {"client_ca_file", c.ClientCAFile}}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return bad(f.field, "%v", err)
		}
	}
	return nil
}

// withDefaults returns c with zero optional fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = c.Type
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = DefaultMaxHandshakes
	}
	if c.isTLS() {
		if c.HelloTimeout == 0 {
			c.HelloTimeout = DefaultHelloTimeout
		}
		c.HelloTimeout = min(c.HelloTimeout, c.HandshakeTimeout)
		if c.MaxHandshakesPerAddress == 0 {
			c.MaxHandshakesPerAddress = DefaultMaxHandshakesPerAddress
		}
		c.MaxHandshakesPerAddress = min(c.MaxHandshakesPerAddress, c.MaxHandshakes)
		if c.MinVersion == "" {
			c.MinVersion = DefaultMinVersion
		}
		if c.ClientAuth == "" {
			c.ClientAuth = DefaultClientAuth
		}
	}
	if c.isWS() {
		if c.Path == "" {
			c.Path = DefaultPath
		}
		c.UpgradeTimeout = cmp.Or(c.UpgradeTimeout, DefaultUpgradeTimeout)
		c.UpgradeRequestTimeout = min(cmp.Or(c.UpgradeRequestTimeout, DefaultUpgradeRequestTimeout), c.UpgradeTimeout)
		c.MaxUpgrades = cmp.Or(c.MaxUpgrades, DefaultMaxUpgrades)
		c.MaxUpgradesPerAddress = min(cmp.Or(c.MaxUpgradesPerAddress, DefaultMaxUpgradesPerAddress), c.MaxUpgrades)
	}
	return c
}

// Listener is a net.Listener for one configured transport. Accept returns
// connections ready for the application protocol: TLS connections are
// *tls.Conn with the handshake complete; WebSocket connections carry the
// binary message stream as a byte stream. Its methods are safe for
// concurrent use.
type Listener struct {
	cfg   Config
	log   *slog.Logger
	raw   net.Listener  // the TCP socket
	inner net.Listener  // tcp: raw; tls: the handshaking listener
	certs *certificates // tls, wss
	ws    *wsServer     // ws, wss

	closeOnce sync.Once
	closeErr  error
}

// Listen validates c, opens its socket and starts serving the transport. ctx
// bounds the opening only; the Listener lives until Close. log may be nil.
func Listen(ctx context.Context, c Config, log *slog.Logger) (*Listener, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("listener", c.Name, "type", c.Type)
	l := &Listener{cfg: c, log: log}
	var tlsCfg *tls.Config
	if c.isTLS() {
		var err error
		l.certs, err = loadCertificates(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		if tlsCfg, err = newTLSConfig(c, l.certs); err != nil {
			return nil, err
		}
	}
	// No TCP keepalive by default (Go sets it with four setsockopt calls
	// per accepted connection): an MQTT keepalive finds a dead peer, and the
	// broker turns TCP keepalive on for clients that asked for none.
	lc := net.ListenConfig{KeepAlive: -1, Control: deferAccept}
	raw, err := lc.Listen(ctx, "tcp", c.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", c.Name, err)
	}
	if c.ProxyProtocol {
		// The header is read on the connection's first Read or RemoteAddr,
		// in the goroutine serving it, never in Accept.
		raw = &proxyproto.Listener{Listener: raw, ReadHeaderTimeout: c.HandshakeTimeout,
			ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
	}
	l.raw = raw
	l.inner = raw
	if c.isTLS() {
		l.inner = newHandshakeListener(raw, tlsCfg, c, log)
	}
	if c.isWS() {
		l.ws = newWSServer(c, l.inner, log)
	}
	log.Info("listening", "addr", raw.Addr().String())
	return l, nil
}

// Accept waits for and returns the next ready connection. After Close it
// returns an error wrapping net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	if l.ws != nil {
		return l.ws.accept()
	}
	return l.inner.Accept()
}

// RawTCP returns an Accepter of raw connections (transport) for a plain TCP
// listener without PROXY protocol; nil for the others, whose connections
// are read through their libraries. Accept and the Accepter take from the
// same socket.
func (l *Listener) RawTCP() transport.Accepter {
	if l.cfg.Type != TypeTCP || l.cfg.ProxyProtocol {
		return nil
	}
	tl, ok := l.raw.(*net.TCPListener)
	if !ok {
		return nil
	}
	a, err := transport.New(tl)
	if err != nil {
		l.log.Warn("connections accepted through net: raw accept unavailable", "err", err)
		return nil
	}
	return a
}

// Close stops listening; calling it again returns the first call's result. Connections not yet returned by Accept (TLS
// handshakes in progress, upgraded WebSockets waiting) are closed;
// connections already returned stay open. Close waits for the listener's
// goroutines to end.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		if l.ws != nil {
			l.closeErr = l.ws.close()
		} else {
			l.closeErr = l.inner.Close()
		}
		l.log.Info("closed")
	})
	return l.closeErr
}

// Addr returns the listening socket's address.
func (l *Listener) Addr() net.Addr { return l.raw.Addr() }

// Config returns the listener's configuration with defaults applied.
func (l *Listener) Config() Config { return l.cfg }

// ReloadCertificates re-reads CertFile and KeyFile. New handshakes use the
// new certificate; established connections are untouched. On error the
// previous certificate stays in use. It returns an error for tcp and ws
// listeners.
func (l *Listener) ReloadCertificates() error {
	if l.certs == nil {
		return fmt.Errorf("listener %q: %s has no certificates to reload", l.cfg.Name, l.cfg.Type)
	}
	if err := l.certs.reload(); err != nil {
		l.log.Error("certificate reload failed; keeping the previous certificate", "err", err)
		return err
	}
	l.log.Info("certificates reloaded", "cert_file", l.cfg.CertFile)
	return nil
}

// CertUsername returns how a client certificate names the client: "cn",
// "subject" or "" (not at all).
func (l *Listener) CertUsername() string {
	if l.cfg.CertUsername == "none" {
		return ""
	}
	return l.cfg.CertUsername
}

// Name returns the listener's configured name.
func (l *Listener) Name() string { return l.cfg.Name }
