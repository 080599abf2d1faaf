package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// maxKeptWriteBuf is the largest write buffer kept between writes.
const maxKeptWriteBuf = 64 << 10

// send encodes p and writes it. ctx's deadline, if any, bounds the write;
// Close interrupts it in any case. A failed write shuts the connection
// down, since a partial write leaves the stream unusable.
func (c *Client) send(ctx context.Context, p packet.Packet) error {
	dl, _ := ctx.Deadline()
	return c.writeDeadline(p, dl)
}

// writeDeadline is send with an explicit deadline (zero: none).
func (c *Client) writeDeadline(p packet.Packet, dl time.Time) error {
	c.w.Lock()
	defer c.w.Unlock()
	select {
	case <-c.closing:
		return c.closedErr()
	default:
	}
	buf, err := p.Append(c.w.buf[:0], c.version)
	if err != nil {
		return fmt.Errorf("client: encoding %s: %w", p.Type(), err)
	}
	if cap(buf) <= maxKeptWriteBuf {
		c.w.buf = buf
	}
	if c.maxOut > 0 && len(buf) > c.maxOut {
		// 5.0 [MQTT-3.1.2-24]: never send more than the server's maximum.
		return fmt.Errorf("client: %s of %d bytes exceeds the server's maximum packet size %d: %w",
			p.Type(), len(buf), c.maxOut, packet.PacketTooLarge)
	}
	if err := c.nc.SetWriteDeadline(dl); err != nil {
		c.shutdown(fmt.Errorf("%w: %w", ErrConnectionLost, err))
		return c.closedErr()
	}
	if _, err := c.nc.Write(buf); err != nil {
		c.shutdown(fmt.Errorf("%w: write: %w", ErrConnectionLost, err))
		return c.closedErr()
	}
	c.lastWrite.Store(time.Now().UnixNano())
	c.logPacket("sent", p)
	return nil
}

// closedErr returns the error for an operation on a shut-down client.
func (c *Client) closedErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return ErrClosed
}

// readLoop reads and handles packets until the connection ends.
func (c *Client) readLoop() {
	defer c.wg.Done()
	defer close(c.msgs)
	r := bufio.NewReader(c.nc)
	for {
		p, err := packet.ReadPacket(r, c.version, 0)
		if err != nil {
			c.shutdown(fmt.Errorf("%w: %w", ErrConnectionLost, err))
			return
		}
		c.logPacket("received", p)
		if err := c.handle(p); err != nil {
			c.shutdown(err)
			return
		}
	}
}

// handle acts on one inbound packet; an error ends the connection.
func (c *Client) handle(p packet.Packet) error {
	ctx := context.Background()
	switch p := p.(type) {
	case *packet.Publish:
		return c.handlePublish(p)
	case *packet.Pubrel:
		c.mu.Lock()
		delete(c.mu.qos2In, p.PacketID)
		c.mu.Unlock()
		return ignoreClosed(c.send(ctx, &packet.Pubcomp{PacketID: p.PacketID})) // [MQTT-4.3.3-11]
	case *packet.Puback, *packet.Pubrec, *packet.Pubcomp, *packet.Suback, *packet.Unsuback:
		return c.routeAck(p)
	case *packet.Pingresp:
		c.pingSent.Store(0)
		return nil
	case *packet.Disconnect:
		return fmt.Errorf("%w: server sent DISCONNECT: %w", ErrConnectionLost, p.ReasonCode)
	}
	return fmt.Errorf("%w: unexpected %s", ErrProtocol, p.Type())
}

// handlePublish delivers an inbound message and acknowledges it.
func (c *Client) handlePublish(p *packet.Publish) error {
	ctx := context.Background()
	switch p.QoS {
	case 0:
		return c.deliver(p)
	case 1:
		if err := c.deliver(p); err != nil {
			return err
		}
		return ignoreClosed(c.send(ctx, &packet.Puback{PacketID: p.PacketID})) // [MQTT-4.3.2-4]
	}
	c.mu.Lock()
	_, seen := c.mu.qos2In[p.PacketID]
	c.mu.qos2In[p.PacketID] = struct{}{}
	c.mu.Unlock()
	if !seen { // a redelivery before PUBREL is not delivered twice [MQTT-4.3.3-10]
		if err := c.deliver(p); err != nil {
			return err
		}
	}
	return ignoreClosed(c.send(ctx, &packet.Pubrec{PacketID: p.PacketID})) // [MQTT-4.3.3-9]
}

// deliver puts p on the Messages channel, waiting while it is full.
func (c *Client) deliver(p *packet.Publish) error {
	select {
	case c.msgs <- p:
		return nil
	case <-c.closing:
		return ErrClosed
	}
}

// ignoreClosed turns a write error into nil when the connection is already
// shut down (the reader then ends on its next read), and passes the rest.
func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, ErrClosed) || errors.Is(err, ErrConnectionLost) {
		return nil
	}
	return err
}

// pingLoop sends PINGREQ when nothing was sent for a keepalive period and
// ends the connection when a PINGREQ stays unanswered for one.
func (c *Client) pingLoop() {
	defer c.wg.Done()
	t := time.NewTimer(c.keepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.closing:
			return
		case <-t.C:
		}
		now := time.Now()
		if ps := c.pingSent.Load(); ps != 0 && now.Sub(time.Unix(0, ps)) >= c.keepAlive {
			c.shutdown(fmt.Errorf("%w: %w", ErrConnectionLost, ErrKeepAliveTimeout))
			return
		}
		if idle := now.Sub(time.Unix(0, c.lastWrite.Load())); idle < c.keepAlive {
			t.Reset(c.keepAlive - idle)
			continue
		}
		if c.pingSent.Load() == 0 {
			c.pingSent.Store(now.UnixNano())
			if err := c.send(context.Background(), &packet.Pingreq{}); err != nil {
				return // the connection is shut down
			}
		}
		t.Reset(c.keepAlive)
	}
}

// logPacket writes a debug record for p.
func (c *Client) logPacket(dir string, p packet.Packet) {
	if !c.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{slog.String("packet", p.Type().String()), slog.String("client", c.clientID)}
	switch p := p.(type) {
	case *packet.Connect:
		attrs = append(attrs, slog.String("version", p.Version.String()), slog.Bool("clean", p.CleanStart),
			slog.Int("keepalive", int(p.KeepAlive)))
	case *packet.Connack:
		attrs = append(attrs, slog.Bool("session_present", p.SessionPresent), slog.String("reason", p.ReasonCode.String()))
	case *packet.Publish:
		attrs = append(attrs, slog.String("topic", p.Topic), slog.Int("qos", int(p.QoS)), slog.Bool("retain", p.Retain),
			slog.Bool("dup", p.Dup), slog.Int("id", int(p.PacketID)), slog.Int("bytes", len(p.Payload)))
	case *packet.Puback:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)), slog.String("reason", p.ReasonCode.String()))
	case *packet.Pubrec:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)), slog.String("reason", p.ReasonCode.String()))
	case *packet.Pubrel:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)))
	case *packet.Pubcomp:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)))
	case *packet.Subscribe:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)), slog.String("subscriptions", subList(p.Subscriptions)))
	case *packet.Suback:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)), slog.String("codes", codeList(p.ReasonCodes)))
	case *packet.Unsubscribe:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)), slog.String("filters", strings.Join(p.Filters, " ")))
	case *packet.Unsuback:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)), slog.String("codes", codeList(p.ReasonCodes)))
	case *packet.Disconnect:
		attrs = append(attrs, slog.String("reason", p.ReasonCode.String()))
	}
	c.log.LogAttrs(context.Background(), slog.LevelDebug, dir, attrs...)
}

// codeList renders reason codes for the log, e.g. "0x00 0x87".
func codeList(codes []packet.ReasonCode) string {
	var b strings.Builder
	for i, c := range codes {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "0x%02X", byte(c))
	}
	return b.String()
}

// subList renders subscriptions for the log, e.g. "a/# q1 b q0".
func subList(subs []packet.Subscription) string {
	var b strings.Builder
	for i, s := range subs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s q%d", s.Filter, s.QoS)
	}
	return b.String()
}
