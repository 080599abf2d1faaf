package broker

import (
	"errors"
	"time"
)

// Serving a connection: on a connection goroutine (serve), or first on the
// goroutine that accepted it (serveInline), until it parks or ends
// (resume).

// serve runs the read loop and cleans up after it.
func (c *conn) serve() {
	// RemoteAddr may read (a PROXY protocol header), so it is asked here,
	// in the connection's goroutine, not in the accept loop.
	c.remoteAddr = c.nc.RemoteAddr()
	c.lastRead = time.Now()
	c.resume()
}

// serveInline serves a new connection on the goroutine that accepted it,
// as far as it goes without waiting: a plain TCP connection whose CONNECT
// is already buffered, with a quick authenticator and nothing to wait for
// in the session table, is connected, sent its CONNACK and parked, with no
// goroutine of its own started. Anything that would wait (no CONNECT yet,
// a takeover, a store write, more packets) goes on in a connection
// goroutine, from where the inline reader stopped.
func (c *conn) serveInline() {
	if !c.tr.CanPark() {
		// TLS, WebSocket, PROXY protocol (whose RemoteAddr reads).
		c.b.gor.run(job{c, taskServe})
		return
	}
	c.remoteAddr = c.nc.RemoteAddr() // a plain TCP connection's: no reading
	c.lastRead = c.accepted          // just accepted
	// Fresh from accept, the socket has no read deadline: rdl's zero is
	// true, and a reader going on without one (no keepalive) sets none.
	c.rdlSet = true
	c.inline = true
	c.resume()
}

// resume runs the read loop until the connection ends, then cleans up; or
// until it parks idle, leaving the rest to a later resume.
func (c *conn) resume() {
	err := c.readLoop()
	if isErr(err, errParked) {
		return
	}
	if c.inline {
		// The accepting goroutine's turn ends; a connection goroutine
		// goes on reading, or cleans up.
		c.inline = false
		switch {
		case isErr(err, errHandOff):
			c.b.gor.run(job{c, taskResume})
		case c.endsQuietly():
			// Never connected and nothing to send (garbage, an
			// oversized CONNECT, a client gone before CONNECT): the
			// cleanup closes the socket and waits for nothing, so
			// the accepting goroutine does it, and a storm of such
			// connections costs no goroutine handoff each.
			c.end(err)
		default:
			c.endErr = err
			c.b.gor.run(job{c, taskEnd})
		}
		return
	}
	c.end(err)
}

// endsQuietly reports whether cleanup would neither write nor wait: the
// connection never connected and no writer runs or has anything to
// write.
func (c *conn) endsQuietly() bool {
	if c.connected || c.writing.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.ctrl) == 0 && !c.mu.closing
}

// errHandOff ends an inline read loop (serveInline) where it would wait.
var errHandOff = errors.New("broker: handed to a connection goroutine")
