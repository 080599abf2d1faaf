package broker

import (
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

func storedMessage(m *session.Message) StoredMessage {
	return StoredMessage{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		Properties: m.Properties, Expiry: m.Expiry, Origin: m.Origin}
}

func storedDelivery(d *session.Delivery) *StoredDelivery {
	return &StoredDelivery{Seq: d.Seq, Msg: storedMessage(d.Msg), QoS: d.QoS, Retain: d.Retain,
		SubIDs: d.SubIDs, Share: d.Share, ShareFilter: d.ShareFilter}
}

func restoredMessage(m *StoredMessage) *session.Message {
	return &session.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		Properties: m.Properties, Expiry: m.Expiry, Origin: m.Origin}
}

func storedSubscription(s session.Subscription) *StoredSubscription {
	return &StoredSubscription{Filter: s.Filter, QoS: s.QoS, NoLocal: s.NoLocal,
		RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling, SubID: s.SubID}
}

// sessionRecord is the store's record of c's session, with the
// connection's will when withWill.
func sessionRecord(c *conn, disconnected time.Time, withWill bool) *StoredSession {
	exp := uint32(NoExpiry)
	if c.version == packet.V5 {
		exp = c.expiry
	}
	rec := &StoredSession{ClientID: c.key, Version: c.version, ExpiryInterval: exp, DisconnectedAt: disconnected}
	if w := c.will; withWill && w != nil {
		props := w.Properties
		rec.Will = &StoredMessage{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, Origin: c.key}
		if c.version == packet.V5 && !props.IsZero() {
			rec.Will.Properties = &props
		}
		rec.WillDelay = uint32(willDelay(w, c.version) / time.Second)
	}
	return rec
}
