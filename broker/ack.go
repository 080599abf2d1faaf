package broker

import "github.com/petrel-mqtt/petrel/packet"

// ack is a PUBACK, PUBREC, PUBREL or PUBCOMP that succeeds and carries no
// properties: the packets a QoS 1/2 stream is mostly made of, in both
// directions. Its whole encoding is 4 bytes, packet id after the fixed
// header, the same in 3.x and in 5.0, where a remaining length of 2 means
// reason code Success and no properties (5.0 sections 3.4.2.1, 3.5.2.1,
// 3.6.2.1, 3.7.2.1). It is the packet type in the high 16 bits and the
// packet id in the low 16, so that the reader decodes into the
// connection's own (readAck) and a queued one costs 4 bytes, not a
// packet struct of some 300 bytes with its properties.
type ack uint32

func newAck(t packet.Type, id uint16) ack { return ack(uint32(t)<<16 | uint32(id)) }

// Type implements packet.Packet.
func (a ack) Type() packet.Type { return packet.Type(a >> 16) }

func (a ack) id() uint16 { return uint16(a) }

// Append implements packet.Packet: the same bytes as the packet package's
// encoding of the success packet without properties.
func (a ack) Append(dst []byte, _ packet.Version) ([]byte, error) {
	h := byte(a.Type()) << 4
	if a.Type() == packet.PUBREL {
		h |= 0x2 // [MQTT-3.6.1-1]
	}
	return append(dst, h, 2, byte(a.id()>>8), byte(a.id())), nil
}

// readAck decodes a 4-byte acknowledgement (fixed header hdr, body of 2
// bytes) into c.inAck and returns it, or returns nil for anything else,
// which packet.Decode then decodes or refuses: other packets, wrong flags
// [MQTT-3.6.1-1] [MQTT-2.2.2-2], packet id 0 [MQTT-2.3.1-1]. The packet is
// the reader's until it reads the next one; the handlers keep nothing of
// it.
func (c *conn) readAck(hdr byte, body []byte) packet.Packet {
	if len(body) != 2 {
		return nil
	}
	var t packet.Type
	switch hdr {
	case byte(packet.PUBACK) << 4:
		t = packet.PUBACK
	case byte(packet.PUBREC) << 4:
		t = packet.PUBREC
	case byte(packet.PUBREL)<<4 | 0x2:
		t = packet.PUBREL
	case byte(packet.PUBCOMP) << 4:
		t = packet.PUBCOMP
	default:
		return nil
	}
	id := uint16(body[0])<<8 | uint16(body[1])
	if id == 0 {
		return nil
	}
	c.inAck = newAck(t, id)
	return &c.inAck
}

// handleAck dispatches an acknowledgement readAck decoded.
func (c *conn) handleAck(a ack) error {
	switch a.Type() {
	case packet.PUBACK:
		return c.puback(a.id())
	case packet.PUBREC:
		return c.pubrec(a.id(), packet.Success)
	case packet.PUBREL:
		return c.pubrel(a.id())
	default:
		return c.pubcomp(a.id())
	}
}

// ackPacket returns the acknowledgement of type t for packet id id with
// code: an ack when it succeeds without properties, else the packet.
func ackPacket(t packet.Type, id uint16, code packet.ReasonCode) packet.Packet {
	if code == packet.Success {
		return newAck(t, id)
	}
	switch t {
	case packet.PUBACK:
		return &packet.Puback{PacketID: id, ReasonCode: code}
	case packet.PUBREC:
		return &packet.Pubrec{PacketID: id, ReasonCode: code}
	case packet.PUBREL:
		return &packet.Pubrel{PacketID: id, ReasonCode: code}
	default:
		return &packet.Pubcomp{PacketID: id, ReasonCode: code}
	}
}
