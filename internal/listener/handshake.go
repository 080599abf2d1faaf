package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/petrel-mqtt/petrel/internal/ratelog"
)

// errEvicted ends the handshake of a connection that was closed to make
// room while its ClientHello was being read.
var errEvicted = errors.New("listener: handshake evicted")

// handshakeListener accepts raw connections and completes their TLS
// handshakes in background goroutines, so that slow peers never delay
// others. Accept returns only connections whose handshake succeeded, as
// *tls.Conn.
//
// What an unfinished handshake may hold is bounded three ways:
//   - in time: a complete ClientHello (and PROXY header) within hello, the
//     whole handshake within timeout, both from accept;
//   - per remote address (IPv4 address, IPv6 /64, after PROXY protocol):
//     at most perAddr at once; a connection over it is closed at once;
//   - in number: at most cap(sem) at once. A new connection never waits
//     for a slot: at the bound the oldest connection that has not sent a
//     complete ClientHello (else the oldest unfinished one) is closed to
//     make room, so a flood of unfinished handshakes cannot keep a prompt
//     client out for longer than the flood takes to renew the whole table.
type handshakeListener struct {
	raw     net.Listener
	config  *tls.Config   // the listener's, with GetConfigForClient = gotHello
	timeout time.Duration // the whole handshake, from accept
	hello   time.Duration // a complete ClientHello, from accept; <= timeout
	proxy   bool          // raw yields PROXY protocol conns: the address comes from their header
	log     *slog.Logger
	every   time.Duration    // between two flood reports
	failed  *ratelog.Limiter // failed handshakes, one line per address per interval

	sem   chan struct{}  // one token per handshake goroutine, evicted ones until they end
	ready chan *tls.Conn // handshaken connections for Accept
	done  chan struct{}  // closed by shutdown
	wg    sync.WaitGroup // the accept loop, handshake goroutines and the report timer

	closeOnce sync.Once
	mu        struct {
		sync.Mutex
		closed bool
		err    error // fatal accept error, returned by Accept
		table  handshakeTable
		report floodReport
	}
}

// floodReportEvery is the shortest time between two WARN lines of one
// listener about handshakes it dropped.
const floodReportEvery = 10 * time.Second

func newHandshakeListener(raw net.Listener, config *tls.Config, c Config, log *slog.Logger) *handshakeListener {
	h := &handshakeListener{
		raw:     raw,
		timeout: c.HandshakeTimeout,
		hello:   min(c.HelloTimeout, c.HandshakeTimeout),
		proxy:   c.ProxyProtocol,
		log:     log,
		every:   floodReportEvery,
		failed:  ratelog.New(log, ratelog.Options{}),
		sem:     make(chan struct{}, c.MaxHandshakes),
		ready:   make(chan *tls.Conn),
		done:    make(chan struct{}),
	}
	h.config = config.Clone()
	h.config.GetConfigForClient = h.gotHello
	h.mu.table = newHandshakeTable(min(c.MaxHandshakesPerAddress, c.MaxHandshakes))
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
		if !h.admit(nc) {
			return
		}
	}
}

// admit starts the handshake of a new connection, or closes it when its
// address has its share; it reports false once the listener is closed.
func (h *handshakeListener) admit(nc net.Conn) bool {
	now := time.Now()
	p := &pendingConn{nc: nc, helloBy: now.Add(h.hello), deadline: now.Add(h.timeout)}
	if !h.proxy {
		// A plain connection's address is known now: refuse it before it
		// can take anyone's slot.
		p.key, _ = addrKey(nc.RemoteAddr()) // not IP: not counted per address
		h.mu.Lock()
		full := h.mu.table.addrFull(p.key)
		if full {
			h.noteLocked(&h.mu.report.refused, now)
		}
		h.mu.Unlock()
		if full {
			h.log.Debug("too many unfinished TLS handshakes from one address; connection closed", "remote", nc.RemoteAddr().String())
			closeQuietly(nc)
			return true
		}
	}
	if !h.acquire() {
		closeQuietly(nc)
		return false
	}
	h.mu.Lock()
	if h.mu.closed {
		h.mu.Unlock()
		<-h.sem
		closeQuietly(nc)
		return false
	}
	h.mu.table.add(p)
	h.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.handshake(p)
	}()
	return true
}

// acquire takes a handshake slot. At the bound it closes the connection
// the table names as victim and waits for its goroutine to give the slot
// back, which it does as soon as its next read fails: a new connection
// never waits for a slow one. It reports false once the listener closes.
func (h *handshakeListener) acquire() bool {
	select {
	case h.sem <- struct{}{}:
		return true
	default:
	}
	h.mu.Lock()
	v := h.mu.table.victim()
	if v != nil {
		h.mu.table.remove(v)
		h.noteLocked(&h.mu.report.evicted, time.Now())
	}
	h.mu.Unlock()
	if v != nil {
		closeQuietly(v.nc)
	}
	// With no victim, every slot belongs to a goroutine that is ending
	// already (evicted, refused, or done and leaving).
	select {
	case h.sem <- struct{}{}:
		return true
	case <-h.done:
		return false
	}
}

func (h *handshakeListener) handshake(p *pendingConn) {
	nc := p.nc
	err := nc.SetDeadline(p.helloBy)
	if err == nil && h.proxy && !h.keyFromHeader(p) {
		<-h.sem
		closeQuietly(nc)
		return
	}
	tc := tls.Server(nc, h.config)
	if err == nil {
		err = tc.Handshake()
	}
	if err == nil {
		err = tc.SetDeadline(time.Time{})
	}
	owned := h.finish(p, err)
	<-h.sem
	if err != nil || !owned {
		if err == nil {
			err = errEvicted
		}
		if owned { // an evicted one is in the flood report
			h.logFailed(nc.RemoteAddr(), err)
		}
		closeQuietly(tc)
		return
	}
	select {
	case h.ready <- tc:
	case <-h.done:
		closeQuietly(tc)
	}
}

// keyFromHeader reads p's PROXY protocol header (RemoteAddr does, within
// the hello deadline already set) and counts p under the address it names.
// It reports false when p is to be closed: its address has its share, or p
// was evicted or the listener closed meanwhile.
func (h *handshakeListener) keyFromHeader(p *pendingConn) bool {
	addr := p.nc.RemoteAddr()
	key, _ := addrKey(addr) // not IP: not counted per address
	if pc, ok := p.nc.(*proxyproto.Conn); ok && pc.ProxyHeader() == nil {
		// No header (or a broken one): the handshake fails at its first
		// read; the balancer's own address is not charged for it.
		key = netip.Prefix{}
	}
	h.mu.Lock()
	gone, full := p.gone, h.mu.table.addrFull(key)
	switch {
	case gone:
	case full:
		h.mu.table.remove(p)
		h.noteLocked(&h.mu.report.refused, time.Now())
	default:
		h.mu.table.setKey(p, key)
	}
	h.mu.Unlock()
	if full && !gone {
		h.log.Debug("too many unfinished TLS handshakes from one address; connection closed", "remote", addr.String())
	}
	return !gone && !full
}

// gotHello is the tls.Config's GetConfigForClient, called once the
// ClientHello has been read: the connection moves on to the rest of the
// handshake, with the full handshake deadline. It returns nil to use the
// listener's configuration unchanged.
func (h *handshakeListener) gotHello(chi *tls.ClientHelloInfo) (*tls.Config, error) {
	h.mu.Lock()
	p := h.mu.table.byConn[chi.Conn]
	if p != nil {
		h.mu.table.advance(p)
	}
	h.mu.Unlock()
	if p == nil {
		return nil, errEvicted
	}
	if err := chi.Conn.SetDeadline(p.deadline); err != nil {
		return nil, err
	}
	return nil, nil
}

// finish takes p out of the table once its handshake ended with err,
// counting a timeout by the stage it came in. It reports false when p was
// out already (evicted, or closed with the listener).
func (h *handshakeListener) finish(p *pendingConn, err error) bool {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.mu.table.remove(p) {
		return false
	}
	if err != nil {
		switch {
		case p.stage == stageHello && !now.Before(p.helloBy):
			h.noteLocked(&h.mu.report.helloTimeouts, now)
		case !now.Before(p.deadline):
			h.noteLocked(&h.mu.report.handshakeTimeouts, now)
		}
	}
	return true
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
		pending := h.mu.table.drain()
		timer := h.mu.report.timer
		h.mu.report.timer = nil
		h.mu.Unlock()
		if timer != nil && timer.Stop() {
			h.wg.Done() // the report it would have made is made by Close
		}
		close(h.done)
		// The raw close error after Close is of no use to anyone.
		_ = h.raw.Close()
		for _, nc := range pending {
			closeQuietly(nc)
		}
	})
}

// Close stops accepting, closes connections still handshaking or waiting for
// Accept, waits for the listener's goroutines and logs what was left to
// report.
func (h *handshakeListener) Close() error {
	h.shutdown()
	h.wg.Wait()
	h.flushReport()
	h.failed.Close()
	return nil
}

// logFailed logs a failed handshake (a wrong CA, a protocol version below
// min_version, plain MQTT on the TLS port, no ClientHello in time) at
// INFO, at most one line per remote address per interval, the others
// counted in one report (ratelog). Evictions are in the flood report.
func (h *handshakeListener) logFailed(addr net.Addr, err error) {
	if errors.Is(err, errEvicted) || !h.failed.Enabled(slog.LevelInfo) {
		return
	}
	reason := "handshake error"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		reason = "timeout"
	}
	h.failed.Log(slog.LevelInfo, ratelog.AddrKey(addr), "TLS handshake failed", ratelog.AuditKey, "tls.failure",
		"remote", addr.String(), "reason", reason, "err", err)
}

// Addr returns the listening address.
func (h *handshakeListener) Addr() net.Addr { return h.raw.Addr() }
