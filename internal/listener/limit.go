package listener

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/internal/transport"
)

// Limited wraps a net.Listener with a bound on concurrent connections and on
// the rate of new ones. Over the connection bound a new connection is closed
// at once; over the rate Accept waits for its turn, leaving the rest in the
// kernel's backlog.
type Limited struct {
	net.Listener
	release  func() // a raw connection's transport.RawConn.SetRelease
	max      int64
	interval time.Duration // between connections at the configured rate; 0: none
	active   atomic.Int64
	refused  atomic.Uint64

	mu   sync.Mutex
	next time.Time // earliest time the next connection may be returned
}

// Limit wraps l. maxConns 0 and rate 0 mean no bound of that kind.
func Limit(l net.Listener, maxConns int, rate float64) *Limited {
	lim := &Limited{Listener: l, max: int64(maxConns)}
	lim.release = func() { lim.active.Add(-1) } // one func for every connection
	if rate > 0 {
		lim.interval = time.Duration(float64(time.Second) / rate)
	}
	return lim
}

// Accept returns the next connection within the bounds.
func (l *Limited) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.admit(nc) {
			continue
		}
		return &limitedConn{Conn: nc, l: l}, nil
	}
}

// admit applies the bounds to a new connection: it waits for the rate,
// then closes nc and reports false over the connection bound.
func (l *Limited) admit(nc net.Conn) bool {
	l.pace()
	if l.max > 0 && l.active.Load() >= l.max {
		l.refused.Add(1)
		_ = nc.Close() // refusing: nothing to report to anyone
		return false
	}
	l.active.Add(1)
	return true
}

// RawTCP returns the wrapped listener's raw Accepter (transport.Source),
// within l's bounds; nil when it has none.
func (l *Limited) RawTCP() transport.Accepter {
	src, ok := l.Listener.(transport.Source)
	if !ok {
		return nil
	}
	a := src.RawTCP()
	if a == nil {
		return nil
	}
	return &limitedAccepter{l: l, a: a}
}

type limitedAccepter struct {
	l *Limited
	a transport.Accepter
}

func (la *limitedAccepter) AcceptRaw() (net.Conn, error) {
	for {
		nc, err := la.a.AcceptRaw()
		if err != nil {
			return nil, err
		}
		if !la.l.admit(nc) {
			continue
		}
		if rc, ok := nc.(transport.RawConn); ok {
			rc.SetRelease(la.l.release) // counted down at its close, without a wrapper
			return nc, nil
		}
		return &limitedConn{Conn: nc, l: la.l}, nil
	}
}

func (la *limitedAccepter) Close() error { return la.a.Close() }

// pace sleeps until the rate allows another connection.
func (l *Limited) pace() {
	if l.interval == 0 {
		return
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	wait := l.next.Sub(now)
	l.next = l.next.Add(l.interval)
	l.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
}

// Active returns the number of open connections accepted through l.
func (l *Limited) Active() int { return int(l.active.Load()) }

// Refused returns how many connections were closed for the connection bound.
func (l *Limited) Refused() uint64 { return l.refused.Load() }

type limitedConn struct {
	net.Conn
	l    *Limited
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.active.Add(-1) })
	return c.Conn.Close()
}

// Name returns the wrapped listener's name, if it has one.
func (l *Limited) Name() string {
	if n, ok := l.Listener.(interface{ Name() string }); ok {
		return n.Name()
	}
	return ""
}

// CertUsername returns the wrapped listener's CertUsername, if it has one.
func (l *Limited) CertUsername() string {
	if n, ok := l.Listener.(interface{ CertUsername() string }); ok {
		return n.CertUsername()
	}
	return ""
}

// NetConn returns the wrapped connection (a *tls.Conn for a TLS listener),
// as tls.Conn.NetConn does.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

// PassThrough marks a wrapper whose reads go straight to the wrapped
// connection, with no buffering of its own: a reader may wait for the
// wrapped connection's readiness instead (the broker's idle parking).
func (c *limitedConn) PassThrough() {}
