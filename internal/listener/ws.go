package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"

	"github.com/coder/websocket"

	"github.com/petrel-mqtt/petrel/internal/clientaddr"
)

// WebSocket subprotocol names. A client must offer one of them
// [MQTT-6.0.0-3]; the server echoes back the one it selected, "mqtt" when
// both are offered [MQTT-6.0.0-4]. "mqttv3.1" is what MQTT 3.1 clients offer.
const (
	SubprotocolMQTT   = "mqtt"
	SubprotocolMQTT31 = "mqttv3.1"
)

var subprotocols = []string{SubprotocolMQTT, SubprotocolMQTT31}

// wsServer serves WebSocket upgrades over HTTP(S) and hands the upgraded
// connections to Accept.
type wsServer struct {
	cfg   Config
	log   *slog.Logger
	srv   *http.Server
	conns chan net.Conn // upgraded connections for Accept; unbuffered
	done  chan struct{} // closed by shutdown
	addr  net.Addr
	wg    sync.WaitGroup // the Serve goroutine and handlers
	// upgrades bounds the connections the HTTP server holds before they
	// are upgraded (its ConnState hook).
	upgrades *upgrades

	closeOnce sync.Once
	mu        struct {
		sync.Mutex
		closed bool
		err    error // fatal serve error, returned by Accept
	}
}

func newWSServer(c Config, inner net.Listener, log *slog.Logger) *wsServer {
	s := &wsServer{
		cfg:   c,
		log:   log,
		conns: make(chan net.Conn),
		done:  make(chan struct{}),
		addr:  inner.Addr(),
	}
	s.upgrades = newUpgrades(c, log)
	s.srv = &http.Server{
		Handler: s,
		// The upgrade request's header within the short deadline; the
		// whole upgrade is bounded by upgrades (a timer per connection).
		ReadHeaderTimeout: c.UpgradeRequestTimeout,
		IdleTimeout:       c.UpgradeTimeout,
		MaxHeaderBytes:    16 << 10,
		ConnState:         s.upgrades.connState,
		ConnContext: func(ctx context.Context, nc net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, nc)
		},
		// Bad requests and handshakes are routine on a public port.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// WebSocket upgrades need HTTP/1.1: no HTTP/2.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	// One request per connection: a refused request closes it, so a
	// client cannot hold a pending connection with a series of requests.
	s.srv.SetKeepAlivesEnabled(false)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.srv.Serve(inner)
		if errors.Is(err, http.ErrServerClosed) {
			return
		}
		s.log.Error("HTTP server stopped", "err", err)
		s.mu.Lock()
		s.mu.err = fmt.Errorf("listener: serve: %w", err)
		s.mu.Unlock()
		s.shutdown()
	}()
	return s
}

// connKey is the request context key of the connection it came on
// (http.Server.ConnContext).
type connKey struct{}

// ServeHTTP upgrades requests on the configured path.
func (s *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if nc, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		s.upgrades.requested(nc)
	}
	if r.URL.Path != s.cfg.Path {
		http.NotFound(w, r)
		return
	}
	if !s.enter() {
		http.Error(w, "server closing", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	if !s.originAllowed(r.Header.Get("Origin")) {
		s.log.Debug("WebSocket origin refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if !offersMQTT(r) {
		// [MQTT-6.0.0-3] the client must offer the "mqtt" subprotocol.
		s.log.Debug("WebSocket subprotocol refused", "remote", r.RemoteAddr, "offered", r.Header.Values("Sec-WebSocket-Protocol"))
		http.Error(w, `websocket subprotocol "mqtt" required`, http.StatusBadRequest)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: subprotocols,
		// Origins were checked above, against CheckOrigin.
		InsecureSkipVerify: true,
	})
	if err != nil {
		s.log.Debug("WebSocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// [MQTT-6.0.0-1] binary frames only: NetConn closes the connection with
	// status 1003 when it reads any other data frame. [MQTT-6.0.0-2] it
	// presents the messages as one byte stream, so packets may span frames
	// or share one. The context is not the request's: the connection
	// outlives this handler.
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	wc := &wsConn{Conn: nc, remote: nc.RemoteAddr(), subprotocol: ws.Subprotocol()}
	if len(s.cfg.TrustedProxies) > 0 {
		// Only a trusted proxy's header is read, from the right: entries
		// left of the first untrusted address are the client's to forge.
		if peer, ok := clientaddr.ParseHostAddr(r.RemoteAddr); ok && clientaddr.Trusted(s.cfg.TrustedProxies, peer) {
			if a, _ := clientaddr.FromRequest(r, s.cfg.TrustedProxies); a != peer {
				wc.remote = net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
			}
		}
	}
	var conn net.Conn = wc
	if r.TLS != nil {
		conn = &wssConn{wsConn: wc, state: *r.TLS}
	}
	select {
	case s.conns <- conn:
	case <-s.done:
		// Closing an upgraded conn nobody accepted: no close handshake.
		_ = ws.CloseNow() // its error changes nothing
	}
}

// enter registers a running handler; it reports false once closing.
func (s *wsServer) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// offersMQTT reports whether the request offers a subprotocol we accept.
func offersMQTT(r *http.Request) bool {
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			for _, p := range subprotocols {
				if strings.EqualFold(tok, p) {
					return true
				}
			}
		}
	}
	return false
}

// originAllowed applies Config.CheckOrigin. An absent Origin (a non-browser
// client) is allowed: the check defends browsers against cross-site use.
func (s *wsServer) originAllowed(origin string) bool {
	if len(s.cfg.CheckOrigin) == 0 || origin == "" {
		return true
	}
	origin = strings.TrimSuffix(origin, "/")
	var host string
	if u, err := url.Parse(origin); err == nil {
		host = u.Host
	}
	for _, allowed := range s.cfg.CheckOrigin {
		allowed = strings.TrimSuffix(strings.TrimSpace(allowed), "/")
		if strings.Contains(allowed, "://") {
			if strings.EqualFold(allowed, origin) {
				return true
			}
		} else if host != "" && strings.EqualFold(allowed, host) {
			return true
		}
	}
	return false
}

func (s *wsServer) accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		s.mu.Lock()
		err := s.mu.err
		s.mu.Unlock()
		if err == nil {
			err = &net.OpError{Op: "accept", Net: "tcp", Addr: s.addr, Err: net.ErrClosed}
		}
		return nil, err
	}
}

// shutdown stops the HTTP server without waiting for goroutines.
func (s *wsServer) shutdown() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.mu.closed = true
		s.mu.Unlock()
		close(s.done)
		// Close also closes the listener; after our own close, its error
		// (if any) is of no use.
		_ = s.srv.Close()
		s.upgrades.close()
	})
}

func (s *wsServer) close() error {
	s.shutdown()
	s.wg.Wait()
	return nil
}

// wsConn is a WebSocket connection presented as a net.Conn carrying the
// binary message stream.
type wsConn struct {
	net.Conn
	remote      net.Addr
	subprotocol string
}

// RemoteAddr returns the peer address, or the client's address from
// X-Forwarded-For when the peer is one of Config.TrustedProxies.
func (c *wsConn) RemoteAddr() net.Addr { return c.remote }

// Subprotocol returns the negotiated WebSocket subprotocol, "mqtt" or
// "mqttv3.1".
func (c *wsConn) Subprotocol() string { return c.subprotocol }

// wssConn is a wsConn over TLS; like *tls.Conn it has ConnectionState, so
// the broker can read a verified client certificate.
type wssConn struct {
	*wsConn
	state tls.ConnectionState
}

// ConnectionState returns the TLS state of the underlying connection.
func (c *wssConn) ConnectionState() tls.ConnectionState { return c.state }
