package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// certificates holds the server certificate behind an atomic pointer so it
// can be swapped while handshakes run.
type certificates struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func loadCertificates(certFile, keyFile string) (*certificates, error) {
	c := &certificates{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certificates) reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("listener: load certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// get is tls.Config.GetCertificate.
func (c *certificates) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

func tlsVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q unsupported; want 1.2 or 1.3", s)
}

func clientAuth(s string) (tls.ClientAuthType, error) {
	switch s {
	case "", "none":
		return tls.NoClientCert, nil
	case "optional":
		return tls.VerifyClientCertIfGiven, nil
	case "require":
		return tls.RequireAndVerifyClientCert, nil
	}
	return 0, fmt.Errorf("%q unknown; want none, optional or require", s)
}

// newTLSConfig builds the server TLS configuration for a validated c.
func newTLSConfig(c Config, certs *certificates) (*tls.Config, error) {
	minVersion, err := tlsVersion(c.MinVersion)
	if err != nil {
		return nil, err
	}
	auth, err := clientAuth(c.ClientAuth)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		MinVersion:     minVersion,
		GetCertificate: certs.get,
		ClientAuth:     auth,
	}
	if c.isWS() {
		// WebSocket upgrades need HTTP/1.1; never negotiate h2.
		tc.NextProtos = []string{"http/1.1"}
	}
	if auth != tls.NoClientCert {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("listener %q: client_ca_file: %w", c.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("listener %q: client_ca_file %s: no PEM certificates found", c.Name, c.ClientCAFile)
		}
		tc.ClientCAs = pool
	}
	return tc, nil
}

// handshakeListener accepts raw connections and completes their TLS
// handshakes in background goroutines, at most maxHandshakes at once and each
// within timeout, so that slow peers never delay others. Accept returns only
// connections whose handshake succeeded, as *tls.Conn.
type handshakeListener struct {
	raw     net.Listener
	config  *tls.Config
	timeout time.Duration
	log     *slog.Logger

	sem   chan struct{}  // one token per handshake in progress
	ready chan *tls.Conn // handshaken connections for Accept
	done  chan struct{}  // closed by Close
	wg    sync.WaitGroup // the accept loop and handshake goroutines

	closeOnce sync.Once
	mu        struct {
		sync.Mutex
		closed  bool
		pending map[net.Conn]struct{} // raw conns not yet handed to Accept
		err     error                 // fatal accept error, returned by Accept
	}
}

func newHandshakeListener(raw net.Listener, config *tls.Config, maxHandshakes int, timeout time.Duration, log *slog.Logger) *handshakeListener {
	h := &handshakeListener{
		raw:     raw,
		config:  config,
		timeout: timeout,
		log:     log,
		sem:     make(chan struct{}, maxHandshakes),
		ready:   make(chan *tls.Conn),
		done:    make(chan struct{}),
	}
	h.mu.pending = make(map[net.Conn]struct{})
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.acceptLoop()
	}()
	return h
}

func (h *handshakeListener) acceptLoop() {
	var delay time.Duration
	for {
		nc, err := h.raw.Accept()
		if err != nil {
			if h.isClosed() {
				return
			}
			if isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				h.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
					continue
				case <-h.done:
					return
				}
			}
			h.log.Error("accept failed; listener stopped", "err", err)
			h.mu.Lock()
			h.mu.err = fmt.Errorf("listener: accept: %w", err)
			h.mu.Unlock()
			h.shutdown()
			return
		}
		delay = 0
		deadline := time.Now().Add(h.timeout)
		if !h.track(nc) {
			closeQuietly(nc)
			return
		}
		// Wait for a handshake slot, but no longer than the connection's
		// own handshake deadline.
		wait := time.NewTimer(h.timeout)
		select {
		case h.sem <- struct{}{}:
			wait.Stop()
		case <-wait.C:
			h.log.Debug("too many TLS handshakes in progress; connection dropped", "remote", nc.RemoteAddr().String())
			h.untrack(nc)
			closeQuietly(nc)
			continue
		case <-h.done:
			wait.Stop()
			return // shutdown closed nc
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.handshake(nc, deadline)
		}()
	}
}

func (h *handshakeListener) handshake(nc net.Conn, deadline time.Time) {
	tc := tls.Server(nc, h.config)
	err := tc.SetDeadline(deadline)
	if err == nil {
		err = tc.Handshake()
	}
	if err == nil {
		err = tc.SetDeadline(time.Time{})
	}
	<-h.sem
	if err != nil {
		// Failed handshakes are routine on a public port (scanners,
		// wrong CA): log at debug to keep floods out of the logs.
		h.log.Debug("TLS handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		h.untrack(nc)
		closeQuietly(tc)
		return
	}
	// Untrack first: once Accept has it, Close must not close it.
	h.untrack(nc)
	select {
	case h.ready <- tc:
	case <-h.done:
		closeQuietly(tc)
	}
}

func (h *handshakeListener) track(nc net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return false
	}
	h.mu.pending[nc] = struct{}{}
	return true
}

func (h *handshakeListener) untrack(nc net.Conn) {
	h.mu.Lock()
	delete(h.mu.pending, nc)
	h.mu.Unlock()
}

func (h *handshakeListener) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.closed
}

// Accept returns the next connection whose TLS handshake completed.
func (h *handshakeListener) Accept() (net.Conn, error) {
	select {
	case tc := <-h.ready:
		return tc, nil
	case <-h.done:
		h.mu.Lock()
		err := h.mu.err
		h.mu.Unlock()
		if err == nil {
			err = &net.OpError{Op: "accept", Net: "tcp", Addr: h.raw.Addr(), Err: net.ErrClosed}
		}
		return nil, err
	}
}

// shutdown stops the listener and closes every pending connection without
// waiting for goroutines.
func (h *handshakeListener) shutdown() {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.mu.closed = true
		pending := h.mu.pending
		h.mu.pending = nil
		h.mu.Unlock()
		close(h.done)
		// The raw close error after Close is of no use to anyone.
		_ = h.raw.Close()
		for nc := range pending {
			closeQuietly(nc)
		}
	})
}

// Close stops accepting, closes connections still handshaking or waiting for
// Accept, and waits for the listener's goroutines.
func (h *handshakeListener) Close() error {
	h.shutdown()
	h.wg.Wait()
	return nil
}

// Addr returns the listening address.
func (h *handshakeListener) Addr() net.Addr { return h.raw.Addr() }

func closeQuietly(c net.Conn) {
	// Closing a connection we are abandoning: its error changes nothing.
	_ = c.Close()
}

// isTemporary reports whether an accept error is worth retrying: a timeout,
// running out of file descriptors, or a connection aborted before accept.
func isTemporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED)
}
