package broker

import (
	"slices"

	"github.com/petrel-mqtt/petrel/internal/retain"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/topic"
	"github.com/petrel-mqtt/petrel/packet"
)

// handleSubscribe adds or replaces each subscription the client may have,
// answers SUBACK with a code per filter, and queues the retained messages
// of each new subscription after it.
func (c *conn) handleSubscribe(p *packet.Subscribe) error {
	codes := make([]packet.ReasonCode, len(p.Subscriptions))
	var subID uint32
	if ids := p.Properties.SubscriptionIdentifiers; len(ids) > 0 {
		subID = ids[0]
	}
	// Decided and applied under the session's guard: Reauthorize sees each
	// subscription either before it is decided here, under the new
	// policy, or once it is in place.
	c.sess.Guard.Lock()
	owed, err := c.subscribeLocked(p, codes, subID)
	c.sess.Guard.Unlock()
	c.b.syncInterest()
	if err != nil {
		return err
	}
	if err := c.persistSubscriptions(p.Subscriptions, codes, subID); err != nil {
		return &closeError{code: packet.UnspecifiedError, reason: reasonNetwork, err: err}
	}
	c.reply(&packet.Suback{PacketID: p.PacketID, ReasonCodes: codes}) // [MQTT-3.8.4-1] [MQTT-3.8.4-5]
	// The writer started for the SUBACK sends them too, after it.
	c.sess.EnqueueRetained(owed)
	return nil
}

// subscribeLocked decides each filter of p, records the granted ones in
// the session and the trie, fills codes and returns the retained messages
// owed to them. The session's Guard is held.
func (c *conn) subscribeLocked(p *packet.Subscribe, codes []packet.ReasonCode, subID uint32) ([]session.Delivery, error) {
	var owed []session.Delivery
	for i, s := range p.Subscriptions {
		_, inner, shared, err := topic.ParseShared(s.Filter)
		if err == nil && !shared {
			inner, err = s.Filter, topic.ValidateFilter(s.Filter)
		}
		if err == nil {
			err = c.b.checkTopicLimits(s.Filter)
		}
		if err != nil {
			// An invalid filter is refused alone; the others of the packet
			// are still granted.
			codes[i] = packet.TopicFilterInvalid
			continue
		}
		if shared && s.NoLocal && c.version == packet.V5 {
			// No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
			return nil, protocolError("no local set on shared subscription %q [MQTT-3.8.3-4]", s.Filter)
		}
		dec := c.b.opts().Authorizer.CanSubscribe(c.id, s.Filter, s.QoS)
		if !dec.OK {
			codes[i] = packet.NotAuthorized // 0x80 in 3.x [MQTT-3.9.3-2]
			c.auditSubscribeRefused(s.Filter)
			continue
		}
		if max := c.b.opts().MaxSubscriptionsPerClient; max > 0 && c.sess.SubscriptionCount() >= max && !c.sess.Subscribed(s.Filter) {
			codes[i] = packet.QuotaExceeded // 0x80 in 3.x
			continue
		}
		granted := min(s.QoS, dec.MaxQoS) // [MQTT-3.8.4-6]
		sub := session.Subscription{
			Filter: s.Filter, QoS: granted, NoLocal: s.NoLocal,
			RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling, SubID: subID,
			Deny: dec.Deny, // filtered at delivery, and below from the retained messages
		}
		existed := c.sess.Subscribe(sub)
		// A subscription to the same filter replaces the old one [MQTT-3.8.4-3].
		// A share group is the tenant's own (groupKey).
		k, _, v := subscriberOf(c.sess, sub)
		c.b.subscribeTrie(inner, k, v)
		codes[i] = packet.ReasonCode(granted)
		if !shared && sendRetained(c.version, s.RetainHandling, existed) {
			owed = c.b.retainedFor(inner, granted, subID, dec.Deny, owed)
		}
	}
	return owed, nil
}

// subscriberOf returns the trie key, inner filter and value of s's
// subscription sub (No Local and Retain As Published are only ever set by
// 5.0 clients: 3.x SUBSCRIBE has no such options).
func subscriberOf(s *session.Session, sub session.Subscription) (subKey, string, subscriber) {
	k, inner := subKeyOf(s, sub.Filter)
	return k, inner, newSubscriber(inner, k.group, sub.QoS, sub.NoLocal, sub.RetainAsPublished, sub.SubID, sub.Deny)
}

// persistSubscriptions writes a persistent session's granted
// subscriptions to the store before SUBACK.
func (c *conn) persistSubscriptions(subs []packet.Subscription, codes []packet.ReasonCode, subID uint32) error {
	if c.b.store == nil || !c.sess.Persistent() {
		return nil
	}
	var batch Batch
	for i, s := range subs {
		if !codes[i].IsError() {
			sub := session.Subscription{Filter: s.Filter, QoS: byte(codes[i]), NoLocal: s.NoLocal,
				RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling, SubID: subID}
			batch.Add(Op{Kind: OpPutSubscription, ClientID: c.key, Sub: storedSubscription(sub)})
		}
	}
	return c.b.commit(&batch, true)
}

// sendRetained applies 5.0 retain handling: 0 sends retained messages on
// every subscribe, 1 only for a new subscription, 2 never. 3.x always sends
// them [MQTT-3.3.1-6], also when a subscription is replaced [MQTT-3.8.4-3].
func sendRetained(v packet.Version, handling byte, existed bool) bool {
	if v != packet.V5 {
		return true
	}
	switch handling {
	case 1:
		return !existed
	case 2:
		return false
	}
	return true
}

// retainedFor appends to dst a delivery of every retained message matching
// filter and no deny filter, with the retain flag set [MQTT-3.3.1-8] at
// min(message QoS, granted QoS).
func (b *Broker) retainedFor(filter string, granted byte, subID uint32, deny []string, dst []session.Delivery) []session.Delivery {
	items := b.retained.Match(filter, nil)
	var ids []uint32
	if subID != 0 {
		ids = []uint32{subID}
	}
	now := b.opts().Now()
	dst = slices.Grow(dst, len(items))
	for _, it := range items {
		if it.Value.Expired(now) { // [MQTT-3.3.2-5]
			b.retained.Delete(it.Topic)
			continue
		}
		if topic.MatchAny(deny, it.Topic) {
			continue // a topic the subscriber's authorization denies
		}
		dst = append(dst, retainedDelivery(it, granted, ids))
	}
	return dst
}

func retainedDelivery(it retain.Item[*session.Message], granted byte, ids []uint32) session.Delivery {
	return session.Delivery{Msg: it.Value, QoS: min(it.Value.QoS, granted), Retain: true, SubIDs: ids}
}

// handleUnsubscribe removes each filter's subscription and answers UNSUBACK
// even when none existed [MQTT-3.10.4-5].
func (c *conn) handleUnsubscribe(p *packet.Unsubscribe) error {
	codes := make([]packet.ReasonCode, len(p.Filters))
	c.sess.Guard.Lock()
	for i, f := range p.Filters {
		if c.sess.Unsubscribe(f) {
			k, inner := subKeyOf(c.sess, f)
			c.b.unsubscribeTrie(inner, k) // [MQTT-3.10.4-1]
		} else {
			codes[i] = packet.NoSubscriptionExisted
		}
	}
	c.sess.Guard.Unlock()
	c.b.syncInterest()
	if c.b.store != nil && c.sess.Persistent() {
		var batch Batch
		for i, f := range p.Filters {
			if codes[i] == packet.Success {
				batch.Add(Op{Kind: OpDeleteSubscription, ClientID: c.key, Filter: f})
			}
		}
		if err := c.b.commit(&batch, true); err != nil {
			return &closeError{code: packet.UnspecifiedError, reason: reasonNetwork, err: err}
		}
	}
	c.reply(&packet.Unsuback{PacketID: p.PacketID, ReasonCodes: codes}) // [MQTT-3.10.4-4]
	return nil
}
