package broker

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/petrel-mqtt/petrel/internal/transport"
	"github.com/petrel-mqtt/petrel/packet"
)

// The reader: readLoop reads packets (readPacket) into a buffer held only
// while bytes are buffered, and hands each to its handler.

// parkGrace is how long a connection with nothing buffered keeps its
// goroutine before it parks: a client publishing more often than this
// never pays for parking and waking per message, an idle one parks soon.
const parkGrace = 100 * time.Millisecond

// busyGrace is the grace of a connection that stayed busy through a whole
// grace: its grace deadline is set once per busyGrace, not moved for every
// packet. Each first move of a socket's deadline after its runtime timer
// came due wakes an idle runtime thread (the runtime's wakeNetPoller), and
// the due timer wakes the netpoller's thread and the runtime's monitor:
// a few wake-ups per grace while the connection is busy, whatever its
// rate (BENCHMARKS.md, "The wake-up cost at light load"). A busy
// connection that goes quiet keeps its goroutine and read buffer this
// long before it parks; one whose packets come more than parkGrace apart
// still parks right after each.
const busyGrace = time.Second

func (c *conn) readLoop() error {
	for {
		var p packet.Packet
		var err error
		switch {
		case c.handoff != nil: // the CONNECT the inline reader left
			p, c.handoff = c.handoff, nil
		case c.inline && c.connected && c.r < c.w:
			// More than CONNECT came: a connection goroutine handles it
			// (SUBSCRIBE and PUBLISH may wait for the store).
			return errHandOff
		default:
			p, err = c.readPacket()
		}
		if err != nil {
			if isErr(err, errParked) {
				// Flushed before the read that parked; another reader
				// goroutine may run c already.
				return err
			}
			c.flushWakes() // for the packets handled before the error
			if !c.connected && errors.Is(err, packet.ErrUnsupportedVersion) {
				// Unsupported protocol level: CONNACK 0x01, then close [MQTT-3.1.2-2].
				c.mu.Lock()
				c.mu.version = packet.V311
				c.mu.Unlock()
				return c.refuse(packet.UnsupportedProtocolVersion, err)
			}
			return err
		}
		if c.inline {
			if cp, ok := p.(*packet.Connect); ok && !c.b.quickConnect(cp) {
				c.handoff = p // handled first by the goroutine handed over to
				return errHandOff
			}
		}
		c.active = c.connected // a packet after CONNECT
		c.handled++
		err = c.handle(p)
		if pub, ok := p.(*packet.Publish); ok {
			// Handled: nothing kept it (the durable pipeline keeps a copy).
			*pub = packet.Publish{}
			publishPool.Put(pub)
		}
		if err != nil {
			c.flushWakes()
			return err
		}
	}
}

// readPacket returns the next packet. The connection holds a pooled read
// buffer only while bytes are buffered; an idle connection parks in Read
// on its 8-byte array.
func (c *conn) readPacket() (packet.Packet, error) {
	for {
		if c.r < c.w {
			buf := (*c.rbuf)[c.r:c.w]
			limit := c.b.opts().MaxPacketSize
			if !c.connected {
				// Not authenticated yet: CONNECT and AUTH get the smaller
				// bound (5.0 section 4.13: an oversized packet is an
				// error; the connection is closed, before anything is
				// allocated for it).
				limit = c.b.opts().MaxConnectSize
			}
			hdr, rem, n, err := packet.ParseFixedHeader(buf, limit)
			switch {
			case err == nil:
				total := n + rem
				if !c.connected && hdr == tlsHandshakeRecord {
					// A CONNECT has no flags [MQTT-2.2.2-2]; this is a TLS
					// client on a plain port, which the log should say.
					return nil, protocolError("TLS handshake on a plain MQTT listener (CONNECT flags must be 0 [MQTT-2.2.2-2])")
				}
				if t := packet.Type(hdr >> 4); !c.connected && t != packet.CONNECT && (t != packet.AUTH || c.pending == nil) {
					// The first packet must be CONNECT [MQTT-3.1.0-1].
					return nil, protocolError("first packet is %s, not CONNECT [MQTT-3.1.0-1]", packet.Type(hdr>>4))
				}
				if len(buf) >= total {
					var p packet.Packet
					var derr error
					if packet.Type(hdr>>4) == packet.PUBLISH && c.connected {
						// Into a pooled packet, which readLoop puts back
						// once handled, topic and payload left in the
						// buffer: handlePublish copies them into the
						// message, before the buffer is read into again.
						pub := publishPool.Get().(*packet.Publish)
						if derr = packet.DecodePublishInPlace(pub, hdr, buf[n:total], c.version); derr != nil {
							publishPool.Put(pub)
						} else {
							p = pub
						}
					} else if p = c.readAck(hdr, buf[n:total]); p == nil {
						p, derr = packet.Decode(hdr, buf[n:total], c.version)
					}
					c.r += total
					c.stats.bytesReceived.Add(uint64(total))
					if derr != nil {
						return nil, decodeError(derr)
					}
					return p, nil
				}
				if total > len(*c.rbuf) && c.w-c.r == len(*c.rbuf) {
					c.growReadBuf(total) // full of this packet's first bytes
				}
			case errors.Is(err, packet.ErrIncomplete):
			default:
				return nil, decodeError(err)
			}
			if c.r > 0 { // keep the partial packet at the front
				c.w = copy(*c.rbuf, (*c.rbuf)[c.r:c.w])
				c.r = 0
			}
		} else {
			c.r, c.w = 0, 0
			c.releaseReadBuf()
		}
		c.flushWakes() // what was read is handled: start the writers before waiting for more
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// fill reads more bytes: into the pooled buffer when a packet is partly
// buffered, otherwise into the small array so that an idle connection holds
// no buffer.
func (c *conn) fill() error {
	if c.rbuf == nil {
		return c.fillIdle()
	}
	c.setReadDeadline()
	n, err := c.read((*c.rbuf)[c.w:])
	c.w += n
	if n > 0 {
		c.lastRead = time.Now() // the rest of a packet: the gap that counts for busy is before its first bytes
		return nil
	}
	return readError(err)
}

// fillIdle reads the first bytes after the buffer emptied, into the small
// array. A parkable connection that is sending often (busy) reads for
// parkGrace first and parks when nothing came; one that is not parks at
// once (a reader just woken from parking reads once before it parks
// again).
func (c *conn) fillIdle() error {
	// Right after CONNECT a connection parks at once: most clients then
	// stay quiet, and thousands connecting at once would otherwise hold
	// their goroutines for the grace.
	grace := !c.woken && c.parkable()
	c.woken = false
	if !c.connected && c.pending == nil {
		// The CONNECT comes at once: one read straight into a buffer.
		c.setReadDeadline()
		c.rbuf = connectBufPool.Get().(*[]byte)
		n, err := c.read(*c.rbuf)
		if n > 0 {
			c.gotBytes()
			c.r, c.w = 0, n
			return nil
		}
		c.releaseReadBuf()
		if errors.Is(err, errHandOff) && c.tr.CanPark() {
			// Accepted before its CONNECT arrived (a listener without
			// TCP_DEFER_ACCEPT, or a slow client): it waits for it
			// parked, until the connect timeout, not in a goroutine.
			if c.park() {
				return errParked
			}
		}
		return readError(err)
	}
	if grace && (!c.active || !c.busy) {
		// Right after CONNECT, or a client that sends less often than
		// parkGrace (a keepalive ping, a reading every minute): waiting
		// for its next packet with a goroutine would hold one (and a
		// buffer) for nothing, and a raw connection (internal/transport)
		// would be made a netpoller connection for that wait alone.
		if c.park() {
			return errParked
		}
		grace = false
	}
	for {
		deadline := c.readDeadline()
		if grace {
			if g := c.graceDeadline(); deadline.IsZero() || g.Before(deadline) {
				deadline = g
			} else {
				grace = false // the keepalive deadline comes first
			}
		}
		c.setDeadline(deadline)
		var n int
		var err error
		if grace {
			// A busy connection reads straight into a pooled buffer (one
			// read for a packet, not 8 bytes first); the buffer goes back
			// to the pool when the grace passes.
			c.rbuf = readBufPool.Get().(*[]byte)
			if n, err = c.read(*c.rbuf); n > 0 {
				c.gotBytes()
				c.r, c.w = 0, n
				return nil
			}
			c.releaseReadBuf()
		} else if n, err = c.read(c.small[:]); n > 0 {
			c.gotBytes()
			c.rbuf = readBufPool.Get().(*[]byte)
			c.w = copy(*c.rbuf, c.small[:n])
			return nil
		}
		var ne net.Error
		if grace && errors.As(err, &ne) && ne.Timeout() {
			if time.Since(c.lastRead) < c.grace() {
				// Bytes came after the deadline was set: busy through
				// a whole grace, it reads on with the longer one.
				c.stayedBusy = true
				continue
			}
			if c.park() {
				return errParked
			}
			grace = false
			continue
		}
		return readError(err)
	}
}

// grace is how long c keeps its goroutine after its last bytes.
func (c *conn) grace() time.Duration {
	if c.stayedBusy {
		return busyGrace
	}
	return parkGrace
}

// graceDeadline is the deadline of a read in the grace: the grace after
// the last bytes, or the grace deadline of an earlier read while it has
// not passed (fillIdle renews it when it passes with bytes read since), so
// that the socket's timer is not moved for every packet.
func (c *conn) graceDeadline() time.Time {
	g := c.lastRead.Add(c.grace())
	if c.rdlSet && c.rdl.Before(g) && time.Until(c.rdl) > 0 {
		return c.rdl
	}
	return g
}

// gotBytes notes that the first read after the buffer emptied returned
// bytes: when, and whether the client is sending more often than
// parkGrace (the gap since the bytes before).
func (c *conn) gotBytes() {
	now := time.Now()
	c.busy = now.Sub(c.lastRead) < parkGrace
	c.lastRead = now
}

// read reads from the connection: through the descriptor for plain TCP
// (internal/transport), through net.Conn otherwise.
func (c *conn) read(buf []byte) (int, error) {
	if c.tr.Raw() {
		if !c.inline {
			return c.tr.Read(buf)
		}
		n, err := c.tr.TryRead(buf)
		if err == transport.ErrWouldBlock {
			err = errHandOff
		}
		return n, err
	}
	return c.nc.Read(buf)
}

func readError(err error) error {
	if err == nil {
		return io.ErrNoProgress
	}
	return err
}

func (c *conn) setReadDeadline() { c.setDeadline(c.readDeadline()) }

// setDeadline sets the read deadline unless it is already set to t (each
// set costs a runtime timer update) or the reader is inline (serveInline:
// its reads never wait; the goroutine it hands over to sets the deadline).
func (c *conn) setDeadline(t time.Time) {
	if c.inline || c.rdlSet && t.Equal(c.rdl) {
		return
	}
	c.rdl, c.rdlSet = t, true
	// An error here means the connection is closed; the Read that follows reports it.
	_ = c.nc.SetReadDeadline(t)
}

// readDeadline is the connect or keepalive deadline (zero for none).
func (c *conn) readDeadline() time.Time {
	if !c.connected {
		// Counted from accept, not from the last bytes: a client sending a
		// byte now and then cannot keep a connection that has not
		// authenticated open past the connect timeout (3.1.1 and 5.0
		// section 3.1.4: the server closes a connection that does not
		// send CONNECT within a reasonable time).
		return c.accepted.Add(c.b.opts().ConnectTimeout)
	}
	if c.readWait <= 0 {
		return time.Time{}
	}
	// Counted from the last bytes received, so a connection resumed from
	// parking at its deadline times out at once.
	return c.lastRead.Add(c.readWait)
}

// growReadBuf makes room for a packet of total bytes that does not fit in
// the read buffer, which its first bytes fill. The buffer at most doubles
// (a pooled one first): the memory a packet holds follows the bytes that
// arrived, not the length its header declares, so a client declaring a
// large packet and sending it slowly, or never, holds little.
func (c *conn) growReadBuf(total int) {
	size := min(total, max(2*len(*c.rbuf), readBufSize))
	var nb *[]byte
	if size == readBufSize {
		nb = readBufPool.Get().(*[]byte)
	} else {
		b := make([]byte, size)
		nb = &b
	}
	c.w = copy(*nb, (*c.rbuf)[c.r:c.w])
	c.r = 0
	c.releaseReadBuf()
	c.rbuf = nb
}

func (c *conn) releaseReadBuf() {
	if c.rbuf == nil {
		return
	}
	switch len(*c.rbuf) {
	case readBufSize:
		readBufPool.Put(c.rbuf)
	case connectBufSize:
		connectBufPool.Put(c.rbuf)
	}
	c.rbuf = nil
}

// decodeError maps a codec error to the close it causes: a malformed packet
// closes the connection (5.0: DISCONNECT with the code) [MQTT-4.8.0-1].
func decodeError(err error) error {
	code := packet.MalformedPacket
	var rc packet.ReasonCode
	if errors.As(err, &rc) {
		code = rc
	}
	return &closeError{code: code, reason: reasonProtocol, err: err}
}
