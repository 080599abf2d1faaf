package broker

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// handlePublish authorizes an inbound PUBLISH, stores or clears the
// retained message, routes it to the matching sessions and acknowledges it.
func (c *conn) handlePublish(p *packet.Publish) error {
	o := c.b.opts()
	if c.version == packet.V5 {
		if err := c.checkPublish5(p, o); err != nil {
			return err
		}
	}
	// The reader decoded p in place: its topic and payload are in the read
	// buffer. They are copied once, into the message routed, before
	// anything can keep them.
	msg := session.NewMessage(p.Topic, p.Payload)
	p.Topic, p.Payload = msg.Topic, msg.Payload
	// The decoder refused a wildcard, U+0000 or (3.x) an empty topic name
	// [MQTT-3.3.2-2] [MQTT-4.7.3-1], checkPublish5 an empty one without an
	// alias; what is left are the configured limits.
	if err := c.b.checkTopicLimits(p.Topic); err != nil {
		return &closeError{code: packet.TopicNameInvalid, reason: reasonProtocol, err: fmt.Errorf("publish: %w", err)}
	}
	var resend uint64 // a QoS 2 resend's write id (InboundWrite)
	if p.QoS == 2 {
		if c.version == packet.V5 && c.sess.InboundQoS2() >= o.ReceiveMaximum && !c.sess.AwaitingPubrel(p.PacketID) {
			// More QoS 2 messages unacknowledged than the Receive Maximum
			// the broker announced [MQTT-3.3.4-7].
			return &closeError{code: packet.ReceiveMaximumExceeded, reason: reasonProtocol,
				err: fmt.Errorf("more than %d QoS 2 messages awaiting PUBREL", o.ReceiveMaximum)}
		}
		if !c.sess.ReceiveQoS2(p.PacketID) {
			if !p.Dup {
				// DUP 0 is never a resend [MQTT-3.3.1-1]: the client reuses
				// an id only once PUBCOMP freed it [MQTT-2.3.1-3], so the
				// id on record is one whose release the store lost in a
				// crash (PUBREL releases it lazily). A new message: taken
				// for a duplicate, it would be lost.
				c.sess.Pubrel(p.PacketID)
				c.sess.ReceiveQoS2(p.PacketID)
			} else if resend = c.sess.InboundWrite(p.PacketID); resend == 0 || c.b.flog == nil {
				// A resent QoS 2 PUBLISH whose PUBREL is pending was routed
				// once already: acknowledge again, do not deliver again
				// [MQTT-4.3.3-2].
				c.reply(newAck(packet.PUBREC, p.PacketID))
				return nil
			}
			// In a cluster, the log write of a resend's first copy may not
			// have happened (fabric_log.go, inboundWriteID): written again
			// under the same id below, routed only if the log had none.
		}
	}
	if !o.Authorizer.CanPublish(c.id, p.Topic, p.QoS, p.Retain) {
		c.auditPublishRefused(p)
		if o.UnauthorizedPublish == UnauthorizedClose {
			return &closeError{code: packet.NotAuthorized, reason: reasonNotAuthorized,
				err: fmt.Errorf("publish to %q (QoS %d, retain %v) not authorized", p.Topic, p.QoS, p.Retain)}
		}
		c.b.countDrop(dropNotAuthorized, 1)
		c.ackInOrder(p, packet.NotAuthorized)
		return nil
	}
	if strings.HasPrefix(p.Topic, "$SYS") {
		// $SYS topics are the broker's own: a client's publish there is
		// acknowledged and dropped (DESIGN.md section 3).
		c.ackInOrder(p, packet.Success)
		return nil
	}
	if c.version == packet.V5 && p.Properties.PayloadFormatIndicator == 1 && !utf8.Valid(p.Payload) {
		// A payload declared UTF-8 that is not [MQTT-3.3.2-4].
		if p.QoS == 0 {
			return &closeError{code: packet.PayloadFormatInvalid, reason: reasonProtocol, err: errors.New("payload is not UTF-8 as its format indicator says")}
		}
		c.ackInOrder(p, packet.PayloadFormatInvalid)
		return nil
	}
	c.countReceived(msg, p.QoS)
	msg.QoS, msg.Retain, msg.Origin = p.QoS, p.Retain, c.key
	if c.version == packet.V5 && !p.Properties.IsZero() {
		props := p.Properties
		props.Clear(packet.PropTopicAlias) // aliases are per connection [MQTT-3.3.2-8]
		if props.Has(packet.PropMessageExpiryInterval) {
			msg.Expiry = o.Now().Add(time.Duration(props.MessageExpiryInterval) * time.Second)
			props.Clear(packet.PropMessageExpiryInterval) // the writer sends what remains [MQTT-3.3.2-6]
		}
		if !props.IsZero() {
			msg.Properties = &props
		}
	}
	var extra Batch
	if c.b.store != nil {
		if p.QoS == 2 && c.sess.Persistent() {
			// Recorded with the message so a resend after a restart is
			// recognised [MQTT-4.3.3-2].
			extra.Add(Op{Kind: OpPutInbound, ClientID: c.key, PacketID: p.PacketID, Seq: resend})
		}
		if p.Retain {
			extra.Add(retainOp(msg))
		}
	}
	if p.QoS > 0 && c.b.flog != nil {
		// In a cluster with a message log the PUBACK/PUBREC waits until
		// a quorum of the cluster stored the message too (fabric_log.go).
		job := durableJob{p: p, msg: msg, extra: extra}
		switch {
		case resend != 0:
			// Written again under its first write's id, after the
			// commits of what the connection sent before it, as a first
			// copy is (logAfter: the connection's writes keep its
			// order); routed once the log answers, if its copy is this
			// one (finishDurable). The journal has the id already (the
			// commit writes it again, unchanged); the retained message
			// is stored only if this copy is the log's.
			job.extra = Batch{}
			job.extra.Add(Op{Kind: OpPutInbound, ClientID: c.key, PacketID: p.PacketID, Seq: resend})
			job.logAfter, job.write, job.resend = true, resend, true
			job.rt = routingPool.Get().(*routing)
			c.submitDurable(job)
			return nil
		case p.QoS == 2 && extra.Len() > 0 && extra.Ops[0].Kind == OpPutInbound:
			// Logged only once the journal holds its packet id, with the
			// write id the log will keep it under: a resend after a crash
			// on either side of the log write is stored once
			// [MQTT-4.3.3-2] (inboundWriteID).
			job.logAfter = true
			job.write = newInboundWrite()
			job.extra.Ops[0].Seq = job.write
			c.sess.SetInboundWrite(p.PacketID, job.write)
		default:
			lw, err := c.logPublish(msg, "")
			if err != nil {
				if p.QoS == 2 {
					// Not routed: the resend after the client reconnects is
					// routed then, not taken for a duplicate [MQTT-4.3.3-2].
					c.sess.Pubrel(p.PacketID)
				}
				return err
			}
			job.lw = lw
		}
		job.rt, _ = c.b.route(msg, c)
		c.submitDurable(job)
		return nil
	}
	rt, _ := c.b.route(msg, c)
	if p.QoS > 0 && c.b.store != nil && (len(rt.staged) > 0 || extra.Len() > 0 || c.durablePending()) {
		// A PUBACK/PUBREC means the message is on disk for every
		// persistent session it was queued for (DESIGN.md section 3): the
		// write and the ack go to the connection's durable pipeline, which
		// groups the messages waiting into one commit and acknowledges in
		// order [MQTT-4.6.0-2] while the reader goes on reading.
		c.submitDurable(durableJob{p: p, msg: msg, rt: rt, extra: extra})
		return nil
	}
	defer rt.release()
	return c.endPublish(p, msg, rt, c.b.writeStaged(rt, &extra, p.QoS > 0), (*conn).reply)
}

// checkPublish5 applies the 5.0 rules on an inbound PUBLISH's properties
// and resolves its topic alias.
func (c *conn) checkPublish5(p *packet.Publish, o *Options) error {
	props := &p.Properties
	if props.Has(packet.PropSubscriptionIdentifier) {
		// A client's PUBLISH carries no Subscription Identifier [MQTT-3.3.4-6].
		return protocolError("PUBLISH from a client with a subscription identifier [MQTT-3.3.4-6]")
	}
	if props.Has(packet.PropTopicAlias) {
		a := props.TopicAlias
		if a == 0 || int(a) > o.TopicAliasMaximum {
			// An alias of 0 or above the broker's Topic Alias Maximum [MQTT-3.3.2-8] [MQTT-3.3.2-9].
			return &closeError{code: packet.TopicAliasInvalid, reason: reasonProtocol, err: fmt.Errorf("topic alias %d outside 1..%d", a, o.TopicAliasMaximum)}
		}
		if p.Topic == "" {
			t, ok := c.inAlias[a]
			if !ok {
				return protocolError("topic alias %d used before it was set", a)
			}
			p.Topic = t
		} else {
			if c.inAlias == nil {
				c.inAlias = make(map[uint16]string)
			}
			c.inAlias[a] = strings.Clone(p.Topic) // apart from the payload it shares memory with
		}
	} else if p.Topic == "" {
		return protocolError("empty topic name without a topic alias")
	}
	if props.Has(packet.PropResponseTopic) {
		if err := c.b.validateName(props.ResponseTopic); err != nil {
			// A Response Topic is a topic name, without wildcards [MQTT-3.3.2-13] [MQTT-3.3.2-14].
			return protocolError("response topic: %v", err)
		}
	}
	return nil
}

// publishWill publishes the connection's will message [MQTT-3.1.2-8], at
// once, or for a 5.0 session after its Will Delay Interval unless the
// session is resumed or ends first [MQTT-3.1.3-9].
func (c *conn) publishWill() {
	msg, delay := willMessage(c.will, c.version, c.key, c.b.opts().Now())
	if delay > 0 && !c.clean {
		if c.expiry != noExpiry {
			delay = min(delay, time.Duration(c.expiry)*time.Second)
		}
		var rec *StoredSession
		if c.sess.Persistent() {
			rec = sessionRecord(c, c.b.opts().Now(), false)
		}
		c.b.scheduleWill(c.key, msg, c.id, delay, rec)
		return
	}
	c.b.sendWill(msg, c.id)
}

// willDelay returns the 5.0 Will Delay Interval of w.
func willDelay(w *packet.Will, v packet.Version) time.Duration {
	if v != packet.V5 || w == nil {
		return 0
	}
	return time.Duration(w.Properties.WillDelayInterval) * time.Second
}

// willMessage turns a will into the message to publish, and its delay:
// the Will Delay Interval is not forwarded, a Message Expiry Interval
// counts from when the will is published (now + delay).
func willMessage(w *packet.Will, v packet.Version, origin string, now time.Time) (*session.Message, time.Duration) {
	msg := &session.Message{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, Origin: origin}
	delay := willDelay(w, v)
	if v == packet.V5 && !w.Properties.IsZero() {
		props := w.Properties
		props.Clear(packet.PropWillDelayInterval)
		if props.Has(packet.PropMessageExpiryInterval) {
			msg.Expiry = now.Add(delay + time.Duration(props.MessageExpiryInterval)*time.Second)
			props.Clear(packet.PropMessageExpiryInterval)
		}
		if !props.IsZero() {
			msg.Properties = &props
		}
	}
	return msg, delay
}
