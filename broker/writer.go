package broker

import (
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// writeLoop is the only code that writes to the connection. It runs while
// there is something to send: it takes a batch from the session, then the
// control packets queued until then (so an ack queued before a message was
// enqueued goes out first), encodes them into one buffer and writes it with
// one call. When nothing is left it returns its buffers and exits.
func (c *conn) writeLoop() { c.writeLoopFrom(nil) }

// writeRest is writeLoop starting with the bytes writeInline could not
// write without blocking (c.wpending).
func (c *conn) writeRest() {
	pending := c.wpending
	c.wpending = nil
	c.writeLoopFrom(pending)
}

// writeLoopFrom is writeLoop starting with the bytes in *pending (a pooled
// write buffer, charged to the memory budget), nil for none.
func (c *conn) writeLoopFrom(pending *[]byte) {
	bufp := pending
	if bufp == nil {
		bufp = writeBufPool.Get().(*[]byte)
	}
	batchp := batchPool.Get().(*[]session.Outbound)
	buf, batch := (*bufp)[:0], (*batchp)[:0]
	defer func() {
		*bufp, *batchp = buf[:0], batch[:0]
		putWriteBuf(bufp)
		batchPool.Put(batchp)
	}()
	if pending != nil && len(*pending) > 0 {
		err := c.write(*pending)
		c.b.budget.Charge(int(c.stripe), -len(*pending))
		if err != nil {
			c.writeFailed(err)
			return
		}
	}
	for {
		sess, v, closing, lim := c.passState()
		batch = batch[:0]
		if sess != nil && !closing {
			batch, _ = sess.TakeBatchLimited(batch, session.BatchLimit{Items: writeBatchMax, Bytes: writeBatchBytes})
		}
		c.recordInflight(batch)
		var err error
		buf, closing, err = c.encode(buf, batch, v, sess, &lim, true)
		if err == nil && len(buf) > 0 {
			err = c.writeBuf(buf)
		}
		if err != nil {
			c.writeFailed(err)
			buf = buf[:0]
			return
		}
		wrote := len(buf) > 0 || len(batch) > 0
		buf = buf[:0]
		if closing {
			c.mu.Lock()
			more := len(c.mu.ctrl) > 0
			c.mu.Unlock()
			if !more {
				// Last packet written: closing nc ends the reader too (a
				// parked one is woken to see it).
				_ = c.nc.Close() // the error of a close we initiated is of no use
				c.tr.Wake()
				c.releaseWriter()
				return
			}
			continue
		}
		if wrote {
			continue
		}
		if sess != nil && c.removalsWaiting.Load() > 0 && sess.WaitsForCooling() {
			// The next delivery waits for an id whose removal waits for a
			// commit: make one (it kicks the writer, session.Cooled).
			c.flushRemovals()
		}
		c.releaseWriter()
		if !c.hasWork() || !c.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

// What one write pass takes and holds. A writer holds encoded at most
// writeFlushAt bytes and one packet's header (its payload too when under
// directPayload), and out of its session's queue at most writeBatchBytes
// of messages (or one larger message) not yet written.
const (
	// writeBatchBytes bounds the messages (Message.Size) a writer
	// goroutine's pass takes from the session; the first is taken
	// whatever its size.
	writeBatchBytes = 256 << 10
	// inlineBatchMax and inlineBatchBytes bound one writeInline pass; a
	// message that does not fit is left to a writer goroutine.
	inlineBatchMax   = 64
	inlineBatchBytes = 64 << 10
	// directPayload: a payload this large is written from the message
	// after the encoded bytes, never copied into the write buffer.
	directPayload = writeFlushAt
)

// writeInline makes one write pass for c in the calling goroutine, another
// connection's reader that just queued for c, instead of starting c's
// writer goroutine: what there is to send (up to inlineBatchMax messages
// of inlineBatchBytes together, and the control packets) goes out in one
// non-blocking write. The caller holds c.writing; writeInline releases it,
// or hands it to a writer goroutine for what is left: bytes the socket did
// not take (a subscriber that reads slowly never blocks the caller), more
// messages, a closing connection, or a persistent session (its pass may
// need a store write).
func (c *conn) writeInline() {
	if !c.tr.Raw() {
		c.b.gor.run(job{c, taskWrite}) // TLS and WebSocket buffer in their libraries
		return
	}
	sess, v, closing, lim := c.passState()
	if closing || (c.b.store != nil && sess != nil && sess.Persistent()) {
		c.b.gor.run(job{c, taskWrite})
		return
	}
	bufp := writeBufPool.Get().(*[]byte)
	batchp := batchPool.Get().(*[]session.Outbound)
	buf, batch := (*bufp)[:0], (*batchp)[:0]
	more := false
	if sess != nil {
		batch, more = sess.TakeBatchLimited(batch, session.BatchLimit{Items: inlineBatchMax, Bytes: inlineBatchBytes, Strict: true})
	}
	buf, _, err := c.encode(buf, batch, v, sess, &lim, false)
	*batchp = batch[:0]
	batchPool.Put(batchp)
	n := 0
	if err == nil && len(buf) > 0 {
		n, err = c.tr.Write(buf)
	}
	if err != nil {
		*bufp = buf
		putWriteBuf(bufp)
		c.writeFailed(err)
		return
	}
	c.stats.bytesSent.Add(uint64(n))
	if n < len(buf) { // the socket is full: a goroutine waits to write the rest
		*bufp = buf[:copy(buf, buf[n:])]
		c.b.budget.Charge(int(c.stripe), len(*bufp)) // released once written
		c.wpending = bufp
		c.b.gor.run(job{c, taskWriteRest})
		return
	}
	*bufp = buf[:0]
	putWriteBuf(bufp)
	if more {
		c.b.gor.run(job{c, taskWrite})
		return
	}
	c.releaseWriter()
	if c.hasWork() && c.writing.CompareAndSwap(false, true) {
		c.b.gor.run(job{c, taskWrite})
	}
}

// encode is the one encode pass of a writer goroutine and of writeInline:
// it appends to buf the control packets queued until now, then batch's
// items (which it clears). With flush (a writer goroutine) buf is written,
// waiting for the socket, whenever it reaches writeFlushAt, and a payload
// of directPayload bytes or more is written from its message after the
// bytes before it, never copied into the buffer; without (writeInline,
// whose batch is under inlineBatchBytes) everything stays in buf for one
// write. closing is read with the control packets.
func (c *conn) encode(buf []byte, batch []session.Outbound, v packet.Version, sess *session.Session, lim *outLimits, flush bool) (_ []byte, closing bool, err error) {
	buf, closing, err = c.appendCtrl(buf, v, lim.maxPacket)
	for i := range batch {
		if err == nil {
			var direct []byte
			buf, direct, err = c.appendOutbound(buf, &batch[i], v, sess, lim)
			switch {
			case err != nil:
			case !flush:
				buf = append(buf, direct...)
			case direct != nil:
				if err = c.writeBuf(buf); err == nil {
					err = c.write(direct)
				}
				buf = buf[:0]
			case len(buf) >= writeFlushAt:
				err = c.writeBuf(buf)
				buf = buf[:0]
			}
		}
		batch[i] = session.Outbound{}
	}
	return buf, closing, err
}

// passState is what a write pass needs from conn.mu, read once per pass.
func (c *conn) passState() (sess *session.Session, v packet.Version, closing bool, lim outLimits) {
	c.mu.Lock()
	sess, v, closing = c.mu.sess, c.mu.version, c.mu.closing
	lim = outLimits{maxPacket: c.mu.maxPacket, aliasMax: c.mu.aliasMax}
	c.mu.Unlock()
	if v == packet.V5 {
		o := c.b.opts()
		lim.now = o.Now()
		// At most what the client accepts [MQTT-3.1.2-26] and the
		// broker's own bound.
		lim.aliasMax = uint16(min(int(lim.aliasMax), o.TopicAliasOutMaximum))
		lim.aliasBytes = o.TopicAliasOutBytes
	}
	return sess, v, closing, lim
}

// appendCtrl takes the control packets queued so far and appends them to
// buf; closing is read with them. The slice goes back to mu.ctrl next time.
func (c *conn) appendCtrl(buf []byte, v packet.Version, maxPacket int) (_ []byte, closing bool, err error) {
	c.mu.Lock()
	ctrl := c.mu.ctrl
	c.mu.ctrl = c.wspare[:0]
	closing = c.mu.closing
	c.mu.Unlock()
	for i, p := range ctrl {
		if err == nil {
			buf, err = c.appendPacket(buf, p, v, maxPacket)
		}
		ctrl[i] = nil
	}
	c.wspare = ctrl[:0]
	return buf, closing, err
}

// writeFailed ends a write pass whose write failed: the connection closes
// (see failWrite) and the writing flag is released.
func (c *conn) writeFailed(err error) {
	c.b.log.Debug("write failed", "client", c.clientID, "remote", c.remoteString(), "err", err)
	c.failWrite()
	c.releaseWriter()
}

// putWriteBuf returns a write buffer to the pool, unless a batch of large
// messages grew it far beyond the usual size.
func putWriteBuf(bufp *[]byte) {
	if cap(*bufp) <= 4*writeFlushAt {
		*bufp = (*bufp)[:0]
		writeBufPool.Put(bufp)
	}
}

// recordInflight records, lazily, the packet ids given to stored QoS 1
// deliveries sent for the first time: losing the record only means the
// message is sent again without DUP after a restart, as QoS 1 allows. A
// stored QoS 2 delivery needs no record before it is sent: its packet id
// is derived from its Seq (session.PacketIDFor), so a restart sends it
// again under the same id and the client recognises the duplicate
// [MQTT-4.3.3-2].
func (c *conn) recordInflight(batch []session.Outbound) {
	if c.b.store == nil {
		return
	}
	for i := range batch {
		o := &batch[i]
		if o.Kind != session.OutPublish || o.Dup || o.PacketID == 0 || o.Delivery.Seq == 0 || o.Delivery.QoS != 1 {
			continue
		}
		c.b.lazy(Op{Kind: OpSetInflight, ClientID: c.key,
			Delivery: &StoredDelivery{Seq: o.Delivery.Seq, PacketID: o.PacketID, State: AwaitPuback}})
	}
}

// hasWork reports whether the writer would find something to send.
func (c *conn) hasWork() bool {
	c.mu.Lock()
	sess, n, closing := c.mu.sess, len(c.mu.ctrl), c.mu.closing
	c.mu.Unlock()
	return n > 0 || closing || (sess != nil && sess.HasPending())
}

// writeBuf writes encoded bytes, counted against the memory budget while
// the write lasts (a subscriber that does not read holds them).
func (c *conn) writeBuf(buf []byte) error {
	c.b.budget.Charge(int(c.stripe), len(buf))
	err := c.write(buf)
	c.b.budget.Charge(int(c.stripe), -len(buf))
	return err
}

func (c *conn) write(buf []byte) error {
	var err error
	if c.tr.Raw() {
		err = c.tr.WriteAll(buf)
	} else {
		_, err = c.nc.Write(buf)
	}
	if err == nil {
		c.stats.bytesSent.Add(uint64(len(buf)))
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
	c.tr.Wake()
}

func (c *conn) appendPacket(buf []byte, p packet.Packet, v packet.Version, maxPacket int) ([]byte, error) {
	if p.Type() == packet.CONNACK {
		c.mu.Lock()
		c.mu.connacked = true
		c.mu.Unlock()
	}
	n := len(buf)
	buf, err := p.Append(buf, v)
	if err != nil || maxPacket == 0 || len(buf)-n <= maxPacket {
		return buf, err
	}
	// Too large for the client: without Reason String and User Properties
	// [MQTT-3.1.2-25], or not at all [MQTT-3.2.2-19].
	if props := diagnostics(p); props != nil {
		props.Clear(packet.PropReasonString)
		props.Clear(packet.PropUserProperty)
		if buf, err = p.Append(buf[:n], v); err != nil || len(buf)-n <= maxPacket {
			return buf, err
		}
	}
	return buf[:n], nil
}

// diagnostics returns the properties of the packets the broker may put a
// Reason String in.
func diagnostics(p packet.Packet) *packet.Properties {
	switch p := p.(type) {
	case *packet.Connack:
		return &p.Properties
	case *packet.Disconnect:
		return &p.Properties
	case *packet.Puback:
		return &p.Properties
	case *packet.Pubrec:
		return &p.Properties
	case *packet.Pubrel:
		return &p.Properties
	case *packet.Pubcomp:
		return &p.Properties
	case *packet.Suback:
		return &p.Properties
	case *packet.Unsuback:
		return &p.Properties
	case *packet.Auth:
		return &p.Properties
	}
	return nil
}

// outLimits are what a 5.0 client asked of the messages sent to it.
type outLimits struct {
	now        time.Time
	maxPacket  int    // 0: none
	aliasMax   uint16 // 0: no topic aliases
	aliasBytes int    // topic bytes the alias table may hold
}

// appendOutbound encodes one session item. For 5.0 it drops a message that
// expired [MQTT-3.3.2-5] or would exceed the client's Maximum Packet Size
// [MQTT-3.1.2-24] (as if acknowledged), sends the remaining expiry
// interval [MQTT-3.3.2-6], the subscription identifiers and, when the
// client allows them, a topic alias. A payload of directPayload bytes or
// more is not appended: it is returned as direct, to be written after buf.
func (c *conn) appendOutbound(buf []byte, o *session.Outbound, v packet.Version, sess *session.Session, lim *outLimits) (_, direct []byte, err error) {
	if o.Kind == session.OutPubrel {
		p := packet.Pubrel{PacketID: o.PacketID}
		buf, err = p.Append(buf, v)
		return buf, nil, err
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
		if !o.Dup && d.Msg.Expired(lim.now) {
			// Expired before onward delivery started [MQTT-3.3.2-5]; a message
			// already sent once is sent again whatever its expiry.
			c.abandon(sess, o, dropExpired)
			return buf, nil, nil
		}
		if d.Msg.Properties != nil {
			p.Properties = *d.Msg.Properties
		}
		p.Properties.SubscriptionIdentifiers = d.SubIDs
		if !d.Msg.Expiry.IsZero() {
			left := max(d.Msg.Expiry.Sub(lim.now), 0)
			p.Properties.MessageExpiryInterval = uint32((left + time.Second - 1) / time.Second)
			p.Properties.Set(packet.PropMessageExpiryInterval)
		}
		if lim.maxPacket > 0 && p.Size(v) > lim.maxPacket {
			c.abandon(sess, o, dropTooLarge)
			return buf, nil, nil
		}
		if lim.aliasMax > 0 {
			c.alias(&p, lim)
		}
	}
	c.countSent(o)
	if len(p.Payload) >= directPayload {
		buf, err = p.AppendHeader(buf, v)
		return buf, p.Payload, err
	}
	buf, err = p.Append(buf, v)
	return buf, nil, err
}

// abandon drops an outbound message the client must not be sent, freeing
// its inflight slot as if it had been acknowledged.
func (c *conn) abandon(sess *session.Session, o *session.Outbound, reason int) {
	c.b.countDrop(reason, 1)
	if o.PacketID != 0 {
		c.dequeue(sess.Abandon(o.PacketID))
	}
}
