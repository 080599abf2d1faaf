package listener

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/petrel-mqtt/petrel/internal/clientaddr"
	"github.com/petrel-mqtt/petrel/internal/ratelog"
)

// upgrades bounds the HTTP upgrades a WebSocket listener (ws, wss) has
// pending: connections handed to the HTTP server (after the TLS handshake
// on wss) that are not yet WebSocket connections. Each holds a goroutine
// and the server's read and write buffers, so, as for unfinished TLS
// handshakes (handshakeListener), what they may hold is bounded three
// ways:
//   - in time: the request's header within Config.UpgradeRequestTimeout
//     (http.Server.ReadHeaderTimeout, counted from the hand-off), the whole
//     upgrade within Config.UpgradeTimeout (a timer, from the hand-off;
//     keep-alives are off, so a client cannot stretch it with requests);
//   - per remote address (IPv4 address, IPv6 /64; peers in
//     Config.TrustedProxies are not counted, their clients are behind
//     them): at most Config.MaxUpgradesPerAddress at once, a connection
//     over it closed on arrival;
//   - in number: at most Config.MaxUpgrades at once; a new connection
//     never waits, at the bound the oldest connection whose request header
//     is not complete (else the oldest pending) is closed for it.
//
// The http.Server's ConnState hook drives it: StateNew enters a
// connection, StateHijacked (upgraded) and StateClosed take it out; the
// handler advances it (requested) once the request header is in.
type upgrades struct {
	max     int
	header  time.Duration
	timeout time.Duration
	trusted []netip.Prefix
	log     *ratelog.Limiter

	mu struct {
		sync.Mutex
		closed bool
		table  handshakeTable
		// stats: evicted, refused per address, header timeouts, upgrade
		// timeouts (UpgradeStats).
		evicted, refused, headerTimeouts, timeouts uint64
	}
}

func newUpgrades(c Config, log *slog.Logger) *upgrades {
	u := &upgrades{max: c.MaxUpgrades, header: c.UpgradeRequestTimeout, timeout: c.UpgradeTimeout,
		trusted: c.TrustedProxies, log: ratelog.New(log, ratelog.Options{})}
	u.mu.table = newHandshakeTable(min(c.MaxUpgradesPerAddress, c.MaxUpgrades))
	return u
}

// connState is the http.Server's ConnState hook.
func (u *upgrades) connState(nc net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		u.enter(nc)
	case http.StateHijacked, http.StateClosed:
		u.leave(nc)
	}
}

// enter counts a new connection, closing it when its address has its
// share, or the oldest pending one when the listener has its bound.
func (u *upgrades) enter(nc net.Conn) {
	now := time.Now()
	p := &pendingConn{nc: nc, helloBy: now.Add(u.header), deadline: now.Add(u.timeout)}
	if peer, ok := addrKey(nc.RemoteAddr()); ok && !clientaddr.Trusted(u.trusted, peer.Addr()) {
		p.key = peer
	}
	var victim *pendingConn
	u.mu.Lock()
	switch {
	case u.mu.closed:
		u.mu.Unlock()
		closeRaw(nc)
		return
	case u.mu.table.maxPerAddr < u.max && u.mu.table.addrFull(p.key):
		u.mu.refused++
		u.mu.Unlock()
		u.report(nc.RemoteAddr(), "too many pending WebSocket upgrades from one address; connection closed")
		closeRaw(nc)
		return
	case u.mu.table.len() >= u.max:
		if victim = u.mu.table.victim(); victim != nil {
			u.mu.table.remove(victim)
			u.mu.evicted++
		}
	}
	u.mu.table.add(p)
	p.timer = time.AfterFunc(u.timeout, func() { u.expire(p) })
	u.mu.Unlock()
	if victim != nil {
		victim.timer.Stop()
		closeRaw(victim.nc)
		u.report(victim.nc.RemoteAddr(), "pending WebSocket upgrades at max_upgrades: the oldest closed for a new connection")
	}
}

// requested marks nc's request header complete (the handler runs): it is
// no longer the first to be evicted, and its close is no request timeout.
// (StateActive does not say so: it also comes for a header cut short.)
func (u *upgrades) requested(nc net.Conn) {
	u.mu.Lock()
	if p := u.mu.table.byConn[nc]; p != nil {
		u.mu.table.advance(p)
	}
	u.mu.Unlock()
}

// leave takes nc out once it was upgraded or closed, counting a request
// header that did not come in time.
func (u *upgrades) leave(nc net.Conn) {
	now := time.Now()
	u.mu.Lock()
	p := u.mu.table.byConn[nc]
	if p != nil {
		u.mu.table.remove(p)
		if p.stage == stageHello && !now.Before(p.helloBy) {
			u.mu.headerTimeouts++
		}
	}
	u.mu.Unlock()
	if p != nil {
		p.timer.Stop()
	}
}

// expire closes p when its upgrade is still pending at its deadline.
func (u *upgrades) expire(p *pendingConn) {
	u.mu.Lock()
	gone := !u.mu.table.remove(p)
	if !gone {
		u.mu.timeouts++
	}
	u.mu.Unlock()
	if !gone {
		closeRaw(p.nc)
	}
}

// report logs a dropped connection at WARN, one line per interval for
// the listener (ratelog; the others counted in its report).
func (u *upgrades) report(addr net.Addr, msg string) {
	u.log.Log(slog.LevelWarn, "upgrades", msg, "remote", addr.String())
}

// close closes every pending connection; later ones are closed on arrival.
func (u *upgrades) close() {
	u.mu.Lock()
	u.mu.closed = true
	pending := make([]*pendingConn, 0, u.mu.table.len())
	for _, p := range u.mu.table.byConn {
		pending = append(pending, p)
	}
	u.mu.table.drain()
	u.mu.Unlock()
	for _, p := range pending {
		p.timer.Stop()
		closeRaw(p.nc)
	}
	u.log.Close()
}

// UpgradeStats counts what a WebSocket listener (ws, wss) did with HTTP
// upgrades it did not complete, since it was opened.
type UpgradeStats struct {
	// InProgress is the number of pending upgrades now.
	InProgress int
	// Evicted counts pending upgrades closed for a new connection at
	// MaxUpgrades.
	Evicted uint64
	// RefusedPerAddress counts connections closed on arrival because their
	// address had MaxUpgradesPerAddress pending upgrades.
	RefusedPerAddress uint64
	// RequestTimeouts counts connections closed for sending no complete
	// request header within UpgradeRequestTimeout.
	RequestTimeouts uint64
	// Timeouts counts connections closed for not completing the upgrade
	// within UpgradeTimeout.
	Timeouts uint64
}

// UpgradeStats returns the listener's upgrade counters; zero for a
// listener that is not ws or wss.
func (l *Listener) UpgradeStats() UpgradeStats {
	if l.ws == nil {
		return UpgradeStats{}
	}
	u := l.ws.upgrades
	u.mu.Lock()
	defer u.mu.Unlock()
	return UpgradeStats{InProgress: u.mu.table.len(), Evicted: u.mu.evicted, RefusedPerAddress: u.mu.refused,
		RequestTimeouts: u.mu.headerTimeouts, Timeouts: u.mu.timeouts}
}

// closeRaw closes a pending connection's socket: a wss connection's TLS
// close_notify is not written (it could wait on a peer that does not
// read, and the hook closing it runs on the HTTP server's accept loop).
func closeRaw(nc net.Conn) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	closeQuietly(nc)
}
