package broker

import (
	"errors"
)

// Parking: an idle plain TCP connection lets its reader goroutine go and
// waits in the transport's parker (internal/transport) until bytes, its
// deadline or its close resume it.

// errParked ends the read loop of a connection parked idle.
var errParked = errors.New("broker: connection parked")

// parkable reports whether c could wait idle without its goroutine: a
// plain TCP connection, connected, not in an authentication exchange, on a
// platform with a parker.
func (c *conn) parkable() bool {
	if !c.connected || c.pending != nil {
		return false
	}
	return c.tr.CanPark()
}

// park lets an idle connection wait without its goroutine; false when it
// must go on reading with it.
func (c *conn) park() bool {
	deadline := c.readDeadline() // the connect timeout before CONNECT
	// Once parked, c is the parker's, and whichever goroutine it resumes
	// c on is not the accepting one.
	inline, stayed := c.inline, c.stayedBusy
	c.inline = false
	c.stayedBusy = false // resumed, it starts with parkGrace again
	if !c.tr.Park(deadline) {
		c.inline, c.stayedBusy = inline, stayed
		return false
	}
	c.b.stats.parks.Add(1)
	return true
}

// Unpark resumes a parked connection's reader (transport.Owner): bytes
// arrived, its deadline passed, or it is being closed.
func (c *conn) Unpark() {
	c.woken = true // read by the resumed reader, which starts after this
	c.b.gor.run(job{c, taskResume})
}
