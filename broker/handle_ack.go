package broker

import "github.com/petrel-mqtt/petrel/packet"

// puback handles PUBACK pid: it completes an outbound QoS 1 delivery and
// lets the writer use the freed inflight slot. An unknown id is ignored.
func (c *conn) puback(pid uint16) error {
	if seq, ok := c.sess.Puback(pid); ok {
		c.dequeue(seq)
		c.deferWake(c)
	}
	return nil
}

// dequeue removes an acknowledged stored delivery from the store, lazily:
// if the removal is lost in a crash, the message is sent again after the
// restart, with DUP, as QoS 1 allows (for QoS 2 the client answers the
// resent PUBREL with PUBCOMP).
func (c *conn) dequeue(seq uint64) {
	if seq != 0 {
		c.b.lazy(Op{Kind: OpDequeue, ClientID: c.key, Seq: seq})
	}
}

// pubrec handles PUBREC pid with code: it answers an outbound QoS 2
// delivery's PUBREC with PUBREL
// [MQTT-4.3.3-1]. For a stored delivery the PUBREL waits until the
// AwaitPubcomp state is on disk, so that after a crash the broker sends
// PUBREL, never the PUBLISH again: a client that got PUBREL has released
// the packet id and would take a resent PUBLISH for a new message
// [MQTT-4.3.3-2]. The write goes to the connection's durable pipeline,
// which commits the PUBRECs of the whole inflight window together while
// the reader reads on, and sends the PUBRELs in the order of the PUBRECs
// [MQTT-4.6.0-4].
func (c *conn) pubrec(pid uint16, code packet.ReasonCode) error {
	if c.version == packet.V5 && code.IsError() {
		// A PUBREC with an error code ends the QoS 2 exchange: no PUBREL
		// [MQTT-4.3.3-4]; the packet id is free again.
		c.dequeue(c.sess.Abandon(pid))
		c.deferWake(c)
		return nil
	}
	j := durableJob{kind: jobPubrel, pid: pid}
	seq, first, ok := c.sess.PubrecState(pid)
	switch {
	case ok && first && seq != 0 && c.b.store != nil:
		// The session moves to AwaitPubcomp once the store has
		// (finishDurable): if the write fails, memory and store both
		// still await the PUBREC, and the connection ends without PUBREL.
		j.seq = seq
	case ok:
		c.sess.Pubrec(pid)
	case c.version == packet.V5:
		j.code = packet.PacketIdentifierNotFound
	default:
		return nil // 3.x: an unknown id is ignored
	}
	if j.seq != 0 || c.durablePending() {
		c.submitDurable(j)
		return nil
	}
	c.reply(ackPacket(packet.PUBREL, j.pid, j.code))
	return nil
}

// pubrel handles PUBREL pid: it releases an inbound QoS 2 packet id and
// answers PUBCOMP [MQTT-4.3.3-2], also for an id already released (a
// resent PUBREL).
func (c *conn) pubrel(pid uint16) error {
	code := packet.Success
	if c.sess.Pubrel(pid) {
		if c.b.store != nil && c.sess.Persistent() {
			// Lazily: if lost, the id comes back at restart and the
			// client's resent PUBREL releases it.
			c.b.lazy(Op{Kind: OpDeleteInbound, ClientID: c.key, PacketID: pid})
		}
	} else if c.version == packet.V5 {
		code = packet.PacketIdentifierNotFound
	}
	c.reply(ackPacket(packet.PUBCOMP, pid, code))
	return nil
}

// pubcomp handles PUBCOMP pid: it completes an outbound QoS 2 delivery. A stored one is
// removed through the durable pipeline: its packet id, derived from its
// Seq, is given again only once the removal is durable (see
// session.PacketIDFor), but its inflight slot is free at once.
func (c *conn) pubcomp(pid uint16) error {
	seq, ok := c.sess.Pubcomp(pid)
	if !ok {
		return nil
	}
	if seq != 0 && c.b.store != nil {
		c.submitDurable(durableJob{kind: jobPubcomp, seq: seq, pid: pid})
	}
	c.deferWake(c)
	return nil
}

// handleDisconnect ends the connection normally: the will is discarded
// [MQTT-3.14.4-3], unless a 5.0 client asks for it with reason 0x04.
func (c *conn) handleDisconnect(p *packet.Disconnect) error {
	if c.version == packet.V5 && p.Properties.Has(packet.PropSessionExpiryInterval) {
		e := p.Properties.SessionExpiryInterval
		if c.expiry == 0 && e != 0 {
			// Expiry 0 at CONNECT cannot become non-zero at DISCONNECT (5.0 §3.14.2.2.2).
			return protocolError("DISCONNECT sets session expiry %d after CONNECT set 0 (5.0 section 3.14.2.2.2)", e)
		}
		c.expiry = e
		c.clean = e == 0
	}
	if c.version == packet.V5 && p.ReasonCode == packet.DisconnectWithWill {
		return &closeError{code: packet.Success, reason: reasonDisconnectWithWill, err: errDisconnectWithWill}
	}
	return errClientDisconnect
}
