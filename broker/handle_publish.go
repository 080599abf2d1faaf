package broker

import (
	"fmt"
	"strings"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// handlePublish authorizes an inbound PUBLISH, stores or clears the
// retained message, routes it to the matching sessions and acknowledges it.
func (c *conn) handlePublish(p *packet.Publish) error {
	if err := c.b.validateName(p.Topic); err != nil {
		// A topic name must be valid and wildcard-free [MQTT-3.3.2-2] [MQTT-4.7.3-1].
		return &closeError{code: packet.TopicNameInvalid, reason: reasonProtocol, err: fmt.Errorf("publish: %w", err)}
	}
	if p.QoS == 2 && !c.sess.ReceiveQoS2(p.PacketID) {
		// A resent QoS 2 PUBLISH whose PUBREL is pending was routed once
		// already: acknowledge again, do not deliver again [MQTT-4.3.3-2].
		c.send(&packet.Pubrec{PacketID: p.PacketID})
		return nil
	}
	if !c.b.opts().Authorizer.CanPublish(c.id, p.Topic, p.QoS, p.Retain) {
		if c.b.opts().UnauthorizedPublish == UnauthorizedClose {
			return &closeError{code: packet.NotAuthorized, reason: reasonNotAuthorized,
				err: fmt.Errorf("publish to %q (QoS %d, retain %v) not authorized", p.Topic, p.QoS, p.Retain)}
		}
		c.ackPublish(p)
		return nil
	}
	if strings.HasPrefix(p.Topic, "$SYS") {
		// $SYS topics are the broker's own: a client's publish there is
		// acknowledged and dropped (DESIGN.md section 3).
		c.ackPublish(p)
		return nil
	}
	c.b.stats.messagesReceived.Add(1)
	msg := &session.Message{
		Topic:   p.Topic,
		Payload: p.Payload,
		QoS:     p.QoS,
		Retain:  p.Retain,
		Origin:  c.clientID,
	}
	if c.version == packet.V5 && !p.Properties.IsZero() {
		props := p.Properties
		props.Clear(packet.PropTopicAlias)
		props.Clear(packet.PropSubscriptionIdentifier)
		msg.Properties = &props
	}
	if p.Retain {
		c.b.retainMessage(msg)
	}
	c.b.publish(msg)
	c.ackPublish(p)
	return nil
}

// retainMessage stores msg as the topic's retained message, or clears it
// when the payload is empty [MQTT-3.3.1-5] [MQTT-3.3.1-10] [MQTT-3.3.1-11].
func (b *Broker) retainMessage(msg *session.Message) {
	if len(msg.Payload) == 0 {
		b.retained.Delete(msg.Topic)
		return
	}
	b.retained.Set(msg.Topic, msg)
}

// ackPublish answers PUBACK for QoS 1 [MQTT-4.3.2-2] and PUBREC for QoS 2
// [MQTT-4.3.3-2]; QoS 0 gets no answer.
func (c *conn) ackPublish(p *packet.Publish) {
	switch p.QoS {
	case 1:
		c.send(&packet.Puback{PacketID: p.PacketID})
	case 2:
		c.send(&packet.Pubrec{PacketID: p.PacketID})
	}
}

// publishWill publishes the connection's will message, as a PUBLISH from
// the client would be [MQTT-3.1.2-8].
func (c *conn) publishWill() {
	w := c.will
	msg := &session.Message{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, Origin: c.clientID}
	if c.version == packet.V5 && !w.Properties.IsZero() {
		props := w.Properties
		props.Clear(packet.PropWillDelayInterval)
		msg.Properties = &props
	}
	if w.Retain { // [MQTT-3.1.2-17]
		c.b.retainMessage(msg)
	}
	c.b.publish(msg)
}
