package broker

import (
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// ackCode is the PUBACK/PUBREC code of a publish once routed: 5.0
// publishers hear that nobody matched (0x10), or that every matching
// session's queue refused it (0x97 quota exceeded: 5.0 section 3.4.2.1,
// 3.5.2.1 [MQTT-3.4.2-1] [MQTT-3.5.2-1]). In a cluster (rt.remote) the
// node does not know whether other nodes' subscribers take it: Success.
func ackCode(v packet.Version, rt *routing) packet.ReasonCode {
	switch {
	case v != packet.V5 || rt.queued > 0 || rt.remote:
		return packet.Success
	case rt.refused > 0:
		return packet.QuotaExceeded
	}
	return packet.NoMatchingSubscribers
}

// ackInOrder acknowledges a publish that needs no store write (refused,
// dropped), behind the publishes still waiting for theirs so that acks
// keep the order of the publishes [MQTT-4.6.0-2].
func (c *conn) ackInOrder(p *packet.Publish, code packet.ReasonCode) {
	if p.QoS > 0 && c.durablePending() {
		c.submitDurable(durableJob{kind: jobAck, p: p, code: code})
		return
	}
	c.ackPublish(p, code)
}

// endPublish ends a routed inbound PUBLISH once the write of what it
// needed on disk returned with err; the reader (inline, with reply) and
// the durable pipeline (with send) end a PUBLISH this way only. On
// success the staged deliveries are queued, the retained message set
// [MQTT-3.3.1-5] and the publish acknowledged (ackCode: 0x10 nobody
// matched, 0x97 every matching queue refused it); a store failure is
// answered by storeFailed. The error returned, a *closeError, ends the
// connection.
func (c *conn) endPublish(p *packet.Publish, msg *session.Message, rt *routing, err error, send func(*conn, packet.Packet)) error {
	if err != nil {
		return c.storeFailed(p, err, send)
	}
	c.b.queueStaged(rt)
	c.b.forward(msg) // after the local deliveries and their write: never what failed
	if p.Retain {
		c.b.retainMessage(msg)
	}
	c.ackPublishWith(p, ackCode(c.version, rt), send)
	return nil
}

// storeFailed answers a publish the store could not take: nothing of it
// is queued or retained; 5.0 QoS 1/2 publishers get the failure in
// PUBACK/PUBREC (0x80); 3.x ones, which have no way to hear it, lose the
// connection (the *closeError returned), so that nothing unstored is
// acknowledged.
func (c *conn) storeFailed(p *packet.Publish, err error, send func(*conn, packet.Packet)) error {
	if c.version == packet.V5 && p.QoS > 0 {
		c.ackPublishWith(p, packet.UnspecifiedError, send)
		return nil
	}
	if p.QoS == 2 && c.b.flog != nil && c.sess.InboundWrite(p.PacketID) != 0 {
		// In a cluster, a persistent session's QoS 2 id stays on record
		// with its write id: the client's resend (DUP) is written again
		// under it and stored once, whether or not this write reached
		// the log (a timed-out one may have) [MQTT-4.3.3-2].
		return &closeError{code: packet.UnspecifiedError, reason: reasonNetwork, err: err}
	}
	if p.QoS == 2 && c.sess.Pubrel(p.PacketID) && c.b.store != nil && c.sess.Persistent() {
		// Not routed: the client's resend after it reconnects is routed
		// then, not taken for a duplicate [MQTT-4.3.3-2] (the id may be
		// on record: a cluster's journal took it, the log did not).
		c.b.lazy(Op{Kind: OpDeleteInbound, ClientID: c.key, PacketID: p.PacketID})
	}
	return &closeError{code: packet.UnspecifiedError, reason: reasonNetwork, err: err}
}

// retainOp is the store operation that sets or clears msg's topic's
// retained message.
func retainOp(msg *session.Message) Op {
	if len(msg.Payload) == 0 {
		return Op{Kind: OpDeleteRetained, Topic: msg.Topic}
	}
	sm := storedMessage(msg)
	return Op{Kind: OpPutRetained, Retained: &sm}
}

// retainMessage stores msg as the topic's retained message, or clears it
// when the payload is empty [MQTT-3.3.1-5] [MQTT-3.3.1-10] [MQTT-3.3.1-11],
// and with a fabric has the other nodes do the same (not for $SYS).
func (b *Broker) retainMessage(msg *session.Message) {
	b.setRetained(msg)
	if b.fabric != nil && !isSysTopic(msg.Topic) {
		b.fabric.Retain(msg)
	}
}

// setRetained is retainMessage on this node only.
func (b *Broker) setRetained(msg *session.Message) {
	if len(msg.Payload) == 0 {
		b.retained.Delete(msg.Topic)
		return
	}
	b.retained.Set(msg.Topic, msg)
}

// ackPublish answers PUBACK for QoS 1 [MQTT-4.3.2-2] and PUBREC for QoS 2
// [MQTT-4.3.3-2]; QoS 0 gets no answer. The reason code goes to 5.0
// clients only. A QoS 2 message refused with an error code will not see
// a PUBREL, so its packet id is released at once.
func (c *conn) ackPublish(p *packet.Publish, code packet.ReasonCode) {
	c.ackPublishWith(p, code, (*conn).send)
}

// ackPublishWith is ackPublish with the sending function: the reader uses
// reply, other goroutines send.
func (c *conn) ackPublishWith(p *packet.Publish, code packet.ReasonCode, send func(*conn, packet.Packet)) {
	if c.version != packet.V5 {
		code = packet.Success
	}
	switch p.QoS {
	case 1:
		send(c, ackPacket(packet.PUBACK, p.PacketID, code))
	case 2:
		if code.IsError() && c.sess.Pubrel(p.PacketID) && c.b.store != nil && c.sess.Persistent() {
			// The exchange ends here [MQTT-4.3.3-4]: no PUBREL will release
			// the id a durable publish recorded (lazily: if lost, a restart
			// keeps the id until the client reuses it).
			c.b.lazy(Op{Kind: OpDeleteInbound, ClientID: c.key, PacketID: p.PacketID})
		}
		send(c, ackPacket(packet.PUBREC, p.PacketID, code))
	}
}
