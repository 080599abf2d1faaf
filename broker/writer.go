package broker

import (
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// writeLoop is the only code that writes to the connection. It runs while
// there is something to send: it takes a batch from the session, then the
// control packets queued until then (so an ack queued before a message was
// enqueued goes out first), encodes them into one buffer and writes it with
// one call. When nothing is left it returns its buffers and exits.
func (c *conn) writeLoop() {
	bufp := writeBufPool.Get().(*[]byte)
	batchp := batchPool.Get().(*[]session.Outbound)
	buf, batch := (*bufp)[:0], (*batchp)[:0]
	var ctrl, spare []packet.Packet
	defer func() {
		*bufp, *batchp = buf[:0], batch[:0]
		writeBufPool.Put(bufp)
		batchPool.Put(batchp)
	}()
	for {
		c.mu.Lock()
		sess, v, closing := c.mu.sess, c.mu.version, c.mu.closing
		c.mu.Unlock()
		batch = batch[:0]
		if sess != nil && !closing {
			batch = sess.TakeBatch(batch, writeBatchMax)
		}
		c.mu.Lock()
		ctrl, c.mu.ctrl = c.mu.ctrl, spare[:0]
		closing = c.mu.closing
		c.mu.Unlock()

		var err error
		for i, p := range ctrl {
			if buf, err = c.appendPacket(buf, p, v); err != nil {
				break
			}
			ctrl[i] = nil
		}
		spare = ctrl
		for i := range batch {
			if err != nil {
				break
			}
			buf, err = c.appendOutbound(buf, &batch[i], v)
			batch[i] = session.Outbound{}
			if err == nil && len(buf) >= writeFlushAt {
				err = c.write(buf)
				buf = buf[:0]
			}
		}
		if err == nil && len(buf) > 0 {
			err = c.write(buf)
		}
		if err != nil {
			c.b.log.Debug("write failed", "client", c.clientID, "remote", c.remote, "err", err)
			c.failWrite()
			buf = buf[:0]
			c.writing.Store(false)
			return
		}
		wrote := len(buf) > 0 || len(batch) > 0
		buf = buf[:0]
		if closing {
			c.mu.Lock()
			more := len(c.mu.ctrl) > 0
			c.mu.Unlock()
			if !more {
				// Last packet written: closing nc ends the reader too.
				_ = c.nc.Close() // the error of a close we initiated is of no use
				c.writing.Store(false)
				return
			}
			continue
		}
		if wrote {
			continue
		}
		c.writing.Store(false)
		if !c.hasWork() || !c.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

// hasWork reports whether the writer would find something to send.
func (c *conn) hasWork() bool {
	c.mu.Lock()
	sess, n, closing := c.mu.sess, len(c.mu.ctrl), c.mu.closing
	c.mu.Unlock()
	return n > 0 || closing || (sess != nil && sess.HasPending())
}

func (c *conn) write(buf []byte) error {
	_, err := c.nc.Write(buf)
	if err == nil {
		c.b.stats.bytesSent.Add(uint64(len(buf)))
	}
	return err
}

// failWrite closes a connection whose write failed; the reader then ends
// with a network error and publishes the will.
func (c *conn) failWrite() {
	c.mu.Lock()
	c.mu.closing = true
	if c.mu.reason == reasonNone {
		c.mu.reason = reasonNetwork
	}
	c.mu.ctrl = nil
	c.mu.Unlock()
	_ = c.nc.Close() // the write already failed; the close error adds nothing
}

func (c *conn) appendPacket(buf []byte, p packet.Packet, v packet.Version) ([]byte, error) {
	if p.Type() == packet.CONNACK {
		c.mu.Lock()
		c.mu.connacked = true
		c.mu.Unlock()
	}
	return p.Append(buf, v)
}

func (c *conn) appendOutbound(buf []byte, o *session.Outbound, v packet.Version) ([]byte, error) {
	if o.Kind == session.OutPubrel {
		p := packet.Pubrel{PacketID: o.PacketID}
		return p.Append(buf, v)
	}
	d := &o.Delivery
	p := packet.Publish{
		Dup:      o.Dup,
		QoS:      d.QoS,
		Retain:   d.Retain,
		Topic:    d.Msg.Topic,
		PacketID: o.PacketID,
		Payload:  d.Msg.Payload,
	}
	if v == packet.V5 {
		if d.Msg.Properties != nil {
			p.Properties = *d.Msg.Properties
		}
		p.Properties.SubscriptionIdentifiers = d.SubIDs
	}
	c.b.stats.messagesSent.Add(1)
	return p.Append(buf, v)
}
