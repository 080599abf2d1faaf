package transport

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrWouldBlock is TryRead's answer when nothing is buffered.
var ErrWouldBlock = errors.New("transport: read would block")

// Owner is the user of a Conn that parks: the broker's connection.
type Owner interface {
	// Unpark is called once per successful Park, when the connection
	// must be read again: bytes or a hang-up arrived, the deadline
	// passed, Wake was called, or the parker stopped working. It runs on
	// the parker's goroutine or the waker's and must not block: it starts
	// the reader elsewhere.
	Unpark()
}

// Conn is the broker's access to one plain TCP connection: raw reads and
// writes on its descriptor and parking. Its zero value is ready for Open;
// it is not copied after. A Conn that Open did not make raw (TLS,
// WebSocket, a wrapper without PassThrough, another platform) has none of
// it, and the connection is served through its net.Conn.
//
// Read, TryRead, Write and WriteAll are one goroutine's at a time per
// direction (the reader's; the writer's); Park, Wake and the parker's
// goroutine may run concurrently with each other and with them.
type Conn struct {
	// Set by Open, before the Conn is shared; read-only after.
	raw   syscall.RawConn // nil: not raw
	p     *Parker         // nil: never parks
	owner Owner

	// Under Parker.mu: the deadline while parked (one timer per Conn,
	// reset per park), and 1 + the descriptor c's registration in the
	// set is under, 0 for none (parking again re-arms it). A Conn in
	// the parker's index is registered under the descriptor it is
	// indexed by. (Small: the broker holds one per connection.)
	timer *time.Timer
	reg   int32
	// parked is set while c waits in the parker's set; whoever clears it
	// (Parker.wake) calls owner.Unpark.
	parked atomic.Bool
}

// Raw reports whether Open made c raw.
func (c *Conn) Raw() bool { return c.raw != nil }

// CanPark reports whether c may park now: raw, with a parker that works
// and has not stopped.
func (c *Conn) CanPark() bool { return c.raw != nil && c.p != nil && c.p.available() }

// Park registers c with its parker for one readiness event (bytes, a
// hang-up) and arms a timer for deadline (zero: none); owner.Unpark is
// called on whichever comes first, or on Wake. False when c cannot park
// (then read it with a goroutine). From a true answer on, c may be
// unparked at any moment, on another goroutine.
func (c *Conn) Park(deadline time.Time) bool {
	if c.raw == nil || c.p == nil {
		return false
	}
	return c.p.park(c, deadline)
}

// Wake unparks c if it is parked (its connection is closing, say).
func (c *Conn) Wake() {
	if c.p != nil {
		c.p.wake(c)
	}
}

// tcpConn returns the TCP connection under nc, seen through wrappers that
// pass reads and writes straight through; nil for anything else (TLS and
// WebSocket connections buffer inside their libraries).
func tcpConn(nc net.Conn) *net.TCPConn {
	for range 4 {
		if tc, ok := nc.(*net.TCPConn); ok {
			return tc
		}
		w, ok := nc.(interface {
			NetConn() net.Conn
			PassThrough()
		})
		if !ok {
			return nil
		}
		nc = w.NetConn()
	}
	return nil
}

// KeepAliver returns what turns TCP keepalive on for nc: a raw
// connection, or the TCP connection under nc; nil for anything else.
func KeepAliver(nc net.Conn) interface{ SetKeepAlive(bool) error } {
	if rc, ok := nc.(RawConn); ok {
		return rc
	}
	if tc := tcpConn(nc); tc != nil {
		return tc
	}
	return nil
}
