package client

import (
	"context"
	"fmt"

	"github.com/petrel-mqtt/petrel/internal/topic"
	"github.com/petrel-mqtt/petrel/packet"
)

// pending is one packet identifier in use by an outbound flow.
type pending struct {
	ch        chan packet.Packet // acks for the waiting caller
	slot      bool               // holds an inflight slot
	abandoned bool               // the caller gave up; the reader finishes the flow
}

// Publish publishes payload to topic. QoS 0 returns once written; QoS 1
// waits for PUBACK; QoS 2 waits for PUBREC, sends PUBREL and waits for
// PUBCOMP. A 5.0 failure reason code in PUBACK or PUBREC is returned as an
// error wrapping the packet.ReasonCode. When ctx ends first, the client
// completes the exchange in the background and keeps the packet identifier
// until it does.
func (c *Client) Publish(ctx context.Context, topicName string, payload []byte, qos byte, retain bool) error {
	return c.PublishPacket(ctx, &packet.Publish{Topic: topicName, Payload: payload, QoS: qos, Retain: retain})
}

// PublishPacket publishes p as Publish does; it lets callers set 5.0
// properties. It sets p.PacketID; p must not be modified until it returns.
func (c *Client) PublishPacket(ctx context.Context, p *packet.Publish) error {
	if p.QoS > 2 {
		return fmt.Errorf("client: publish: QoS %d", p.QoS)
	}
	if err := topic.ValidateName(p.Topic); err != nil {
		return fmt.Errorf("client: publish: %w", err)
	}
	if p.QoS == 0 {
		p.PacketID = 0
		return c.send(ctx, p)
	}
	// The 5.0 receive maximum bounds the QoS 1 and 2 publishes in flight.
	select {
	case c.inflight <- struct{}{}:
	case <-c.closing:
		return c.closedErr()
	case <-ctx.Done():
		return fmt.Errorf("client: publish: %w", ctx.Err())
	}
	id, pd, err := c.allocID(true)
	if err != nil {
		<-c.inflight
		return err
	}
	p.PacketID = id
	if err := c.send(ctx, p); err != nil {
		c.freeID(id)
		return err
	}
	ack, err := c.await(ctx, id, pd)
	if err != nil {
		return err
	}
	if p.QoS == 1 {
		c.freeID(id)
		a, ok := ack.(*packet.Puback)
		if !ok {
			return fmt.Errorf("%w: %s for PUBLISH id %d", ErrProtocol, ack.Type(), id)
		}
		if a.ReasonCode.IsError() {
			return fmt.Errorf("client: publish to %q refused: %w", p.Topic, a.ReasonCode)
		}
		return nil
	}
	rec, ok := ack.(*packet.Pubrec)
	if !ok {
		c.freeID(id)
		return fmt.Errorf("%w: %s for PUBLISH id %d", ErrProtocol, ack.Type(), id)
	}
	if rec.ReasonCode.IsError() { // 5.0 §4.3.3: the flow ends with a failing PUBREC
		c.freeID(id)
		return fmt.Errorf("client: publish to %q refused: %w", p.Topic, rec.ReasonCode)
	}
	if err := c.send(ctx, &packet.Pubrel{PacketID: id}); err != nil { // [MQTT-4.3.3-3]
		c.freeID(id)
		return err
	}
	ack, err = c.await(ctx, id, pd)
	if err != nil {
		return err
	}
	c.freeID(id)
	comp, ok := ack.(*packet.Pubcomp)
	if !ok {
		return fmt.Errorf("%w: %s for PUBREL id %d", ErrProtocol, ack.Type(), id)
	}
	if comp.ReasonCode.IsError() {
		return fmt.Errorf("client: publish to %q: PUBCOMP: %w", p.Topic, comp.ReasonCode)
	}
	return nil
}

// Subscribe sends SUBSCRIBE and returns the SUBACK reason codes, one per
// subscription: the granted QoS, or a failure code (0x80 and above) for a
// refused filter. A refused filter is not an error; a failed exchange is.
func (c *Client) Subscribe(ctx context.Context, subs ...packet.Subscription) ([]packet.ReasonCode, error) {
	if len(subs) == 0 {
		return nil, fmt.Errorf("client: subscribe: no topic filter")
	}
	for _, s := range subs {
		if err := topic.ValidateFilter(s.Filter); err != nil {
			return nil, fmt.Errorf("client: subscribe: %w", err)
		}
	}
	ack, err := c.exchange(ctx, func(id uint16) packet.Packet {
		return &packet.Subscribe{PacketID: id, Subscriptions: subs}
	})
	if err != nil {
		return nil, err
	}
	sa, ok := ack.(*packet.Suback)
	if !ok {
		return nil, fmt.Errorf("%w: %s for SUBSCRIBE", ErrProtocol, ack.Type())
	}
	if len(sa.ReasonCodes) != len(subs) { // [MQTT-3.8.4-6]
		return nil, fmt.Errorf("%w: SUBACK has %d codes for %d filters", ErrProtocol, len(sa.ReasonCodes), len(subs))
	}
	return sa.ReasonCodes, nil
}

// Unsubscribe sends UNSUBSCRIBE and waits for UNSUBACK. It returns the 5.0
// reason codes, one per filter; 3.x servers send none (nil).
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) ([]packet.ReasonCode, error) {
	if len(filters) == 0 {
		return nil, fmt.Errorf("client: unsubscribe: no topic filter")
	}
	for _, f := range filters {
		if err := topic.ValidateFilter(f); err != nil {
			return nil, fmt.Errorf("client: unsubscribe: %w", err)
		}
	}
	ack, err := c.exchange(ctx, func(id uint16) packet.Packet {
		return &packet.Unsubscribe{PacketID: id, Filters: filters}
	})
	if err != nil {
		return nil, err
	}
	ua, ok := ack.(*packet.Unsuback)
	if !ok {
		return nil, fmt.Errorf("%w: %s for UNSUBSCRIBE", ErrProtocol, ack.Type())
	}
	return ua.ReasonCodes, nil
}

// exchange sends the packet build makes with a fresh packet identifier and
// returns the one acknowledgement that answers it.
func (c *Client) exchange(ctx context.Context, build func(id uint16) packet.Packet) (packet.Packet, error) {
	id, pd, err := c.allocID(false)
	if err != nil {
		return nil, err
	}
	if err := c.send(ctx, build(id)); err != nil {
		c.freeID(id)
		return nil, err
	}
	ack, err := c.await(ctx, id, pd)
	if err != nil {
		return nil, err
	}
	c.freeID(id)
	return ack, nil
}

// allocID reserves a free packet identifier [MQTT-2.3.1-2].
func (c *Client) allocID(slot bool) (uint16, *pending, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.err != nil {
		return 0, nil, c.mu.err
	}
	for range 65535 {
		c.mu.nextID++
		if c.mu.nextID == 0 {
			c.mu.nextID = 1
		}
		if _, used := c.mu.pending[c.mu.nextID]; !used {
			pd := &pending{ch: make(chan packet.Packet, 2), slot: slot}
			c.mu.pending[c.mu.nextID] = pd
			return c.mu.nextID, pd, nil
		}
	}
	return 0, nil, ErrNoPacketID
}

// freeID releases id and its inflight slot.
func (c *Client) freeID(id uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.freeIDLocked(id)
}

func (c *Client) freeIDLocked(id uint16) {
	pd, ok := c.mu.pending[id]
	if !ok {
		return
	}
	delete(c.mu.pending, id)
	if pd.slot {
		<-c.inflight
	}
}

// await waits for the next acknowledgement of id. When ctx ends first it
// abandons the flow to the reader, which frees the id when the flow ends;
// otherwise the caller frees it when its flow ends.
func (c *Client) await(ctx context.Context, id uint16, pd *pending) (packet.Packet, error) {
	select {
	case p := <-pd.ch:
		return p, nil
	case <-c.closing:
		return nil, c.closedErr()
	case <-ctx.Done():
		c.abandon(id, pd)
		return nil, fmt.Errorf("client: waiting for acknowledgement of packet %d: %w", id, ctx.Err())
	}
}

// abandon hands the flow of id to the reader: acks already queued for the
// caller are handled now, later ones by routeAck.
func (c *Client) abandon(id uint16, pd *pending) {
	c.mu.Lock()
	pd.abandoned = true
	var rel bool
	for done := false; !done; {
		select {
		case p := <-pd.ch:
			rel = c.finishAbandonedLocked(id, p)
		default:
			done = true
		}
	}
	c.mu.Unlock()
	if rel {
		// An error here means the connection is shut down; nothing is left to finish.
		_ = c.send(context.Background(), &packet.Pubrel{PacketID: id})
	}
}

// finishAbandonedLocked handles ack p of an abandoned flow: it frees the
// id, or reports that a PUBREL must be sent to finish a QoS 2 flow.
func (c *Client) finishAbandonedLocked(id uint16, p packet.Packet) (sendPubrel bool) {
	if rec, ok := p.(*packet.Pubrec); ok && !rec.ReasonCode.IsError() {
		return true
	}
	c.freeIDLocked(id)
	return false
}

// routeAck hands an acknowledgement to the flow waiting for its id.
func (c *Client) routeAck(p packet.Packet) error {
	var id uint16
	switch a := p.(type) {
	case *packet.Puback:
		id = a.PacketID
	case *packet.Pubrec:
		id = a.PacketID
	case *packet.Pubcomp:
		id = a.PacketID
	case *packet.Suback:
		id = a.PacketID
	case *packet.Unsuback:
		id = a.PacketID
	}
	c.mu.Lock()
	pd, ok := c.mu.pending[id]
	rel := false
	switch {
	case !ok:
		c.log.Debug("acknowledgement for an unknown packet id", "packet", p.Type().String(), "id", id)
	case pd.abandoned:
		rel = c.finishAbandonedLocked(id, p)
	default:
		select {
		case pd.ch <- p:
		default:
			c.mu.Unlock()
			return fmt.Errorf("%w: unexpected %s for packet id %d", ErrProtocol, p.Type(), id)
		}
	}
	c.mu.Unlock()
	if rel {
		return ignoreClosed(c.send(context.Background(), &packet.Pubrel{PacketID: id}))
	}
	return nil
}
