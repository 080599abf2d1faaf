package broker

import (
	"maps"
	"slices"
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
		// The delay is WillDelay: a PUBLISH (the store's encoding of a
		// message) may not carry it (5.0 section 3.3.2.3), and a store that
		// decodes messages as PUBLISH packets would refuse the record.
		props.Clear(packet.PropWillDelayInterval)
		rec.Will = &StoredMessage{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, Origin: c.key}
		if c.version == packet.V5 && !props.IsZero() {
			rec.Will.Properties = &props
		}
		rec.WillDelay = uint32(willDelay(w, c.version) / time.Second)
		rec.Holder = storedHolder(c.id)
	}
	return rec
}

// storedHolder is id as a will's record keeps it; nil for nil.
func storedHolder(id *Identity) *StoredHolder {
	if id == nil {
		return nil
	}
	return &StoredHolder{Tenant: id.Tenant, Username: id.Username, Roles: slices.Clone(id.Roles),
		Method: id.Method, Principal: id.Principal, Attrs: maps.Clone(id.Attrs)}
}

// restoredHolder is the Identity of a stored will's holder in the session
// of key; nil for none.
func restoredHolder(h *StoredHolder, key string) *Identity {
	if h == nil {
		return nil
	}
	_, client := SplitSessionKey(key)
	return &Identity{Tenant: h.Tenant, Username: h.Username, ClientID: client, Roles: h.Roles,
		Method: h.Method, Principal: h.Principal, Attrs: h.Attrs}
}

// restoredSubscription is a stored subscription as a session holds it
// (restore and adoption).
func restoredSubscription(sub *StoredSubscription) session.Subscription {
	return session.Subscription{Filter: sub.Filter, QoS: sub.QoS, NoLocal: sub.NoLocal,
		RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, SubID: sub.SubID}
}

// restoreDelivery puts stored delivery sd back in session s (restore and
// adoption), its first deliveries in an inflight window of window; the
// removal of one it finds ended goes to stale.
func restoreDelivery(s *session.Session, clientID string, sd *StoredDelivery, window int, stale *Batch) {
	d := session.Delivery{Msg: restoredMessage(&sd.Msg), QoS: sd.QoS, Retain: sd.Retain,
		SubIDs: sd.SubIDs, Share: sd.Share, ShareFilter: sd.ShareFilter, Seq: sd.Seq}
	if seq := s.Restore(d, sd.PacketID, session.RestoreState(sd.State), window); seq != 0 {
		stale.Add(Op{Kind: OpDequeue, ClientID: clientID, Seq: seq})
	}
}
