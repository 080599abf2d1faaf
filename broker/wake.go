package broker

import (
	"github.com/petrel-mqtt/petrel/packet"
)

// Waking writers: control packets queued for the writer (send, reply),
// writers noted by a reader and started once it has handled what it read
// (deferWake, flushWakes), and kick.

// send queues a control packet for the writer.
func (c *conn) send(p packet.Packet) {
	if c.queueCtrl(p) {
		c.kick()
	}
}

// queueCtrl queues a control packet unless the connection is closing.
func (c *conn) queueCtrl(p packet.Packet) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closing {
		return false
	}
	c.mu.ctrl = append(c.mu.ctrl, p)
	return true
}

// reply queues a control packet from the reader goroutine: the writer is
// started when the reader has handled what it read (flushWakes), so that
// the acks of a burst go out in one write.
func (c *conn) reply(p packet.Packet) {
	if c.queueCtrl(p) {
		c.deferWake(c)
	}
}

// deferWake notes, in c's reader goroutine, that to's writer must be
// started: flushWakes does it before c's reader waits for input.
func (c *conn) deferWake(to *conn) {
	if to.writing.Load() {
		return // its running writer finds the new item (see writeLoop's end)
	}
	if n := len(c.wakes); n > 0 && c.wakes[n-1] == to {
		return
	}
	c.wakes = append(c.wakes, to)
}

// inlineWritesMax is how many writers one flushWakes may run in the
// reader's goroutine; with more (a fan-out) they all get their own
// goroutine and run in parallel while the reader goes on reading.
const inlineWritesMax = 2

// flushWakes starts the writers deferWake noted. A few write in this
// goroutine, with one non-blocking write each (writeInline): at low and
// moderate rates a message then goes from the publisher's read to the
// subscriber's socket without waking another goroutine.
func (c *conn) flushWakes() {
	inline := len(c.wakes) <= inlineWritesMax // a fan-out writes in parallel
	// Its own connection only after a few packets (a client at a low or
	// moderate rate, or CONNACK): in a flood its writer runs beside the
	// reader (a reader writing its own acks and messages would stop
	// reading meanwhile, and acking a flood sooner only fills subscriber
	// queues faster).
	self := c.handled <= inlineSelfMax
	for i, to := range c.wakes {
		c.wakes[i] = nil
		if !to.writing.CompareAndSwap(false, true) {
			continue
		}
		if inline && (to != c || self) {
			to.writeInline()
		} else {
			c.b.gor.run(job{to, taskWrite})
		}
	}
	c.wakes = c.wakes[:0]
	c.handled = 0
}

// inlineSelfMax is how many packets a reader may have handled since its
// last flushWakes and still write its own replies itself.
const inlineSelfMax = 4

// Wake starts c's writer (session.Waker).
func (c *conn) Wake() { c.kick() }

// kick starts the writer unless it is running. Cheap when it is.
func (c *conn) kick() {
	if c.writing.CompareAndSwap(false, true) {
		c.b.gor.run(job{c, taskWrite})
	}
}
