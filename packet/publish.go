package packet

import (
	"bytes"
	"fmt"
)

func decodePublish(flags byte, body []byte, v Version) (*Publish, error) {
	d := decoder{b: body, pkt: "publish"}
	p := &Publish{Dup: flags&8 != 0, QoS: flags >> 1 & 3, Retain: flags&1 != 0}
	if p.QoS == 3 {
		return nil, d.errorf(ErrMalformedPacket, "QoS 3 [MQTT-3.3.1-4]") // [MQTT-3.3.1-4]
	}
	if p.Dup && p.QoS == 0 {
		return nil, d.errorf(ErrMalformedPacket, "DUP set with QoS 0 [MQTT-3.3.1-2]") // [MQTT-3.3.1-2]
	}
	topic, err := d.readStringAlias("topic name") // [MQTT-3.3.2-1]
	if err != nil {
		return nil, err
	}
	if len(topic) == 0 && v != V5 {
		return nil, d.errorf(ErrMalformedPacket, "empty topic name [MQTT-4.7.3-1]") // [MQTT-4.7.3-1]; 5.0 allows it with a topic alias (the broker checks)
	}
	if bytes.ContainsAny(topic, "+#") {
		return nil, d.errorf(ErrMalformedPacket, "wildcard in topic name %q [MQTT-3.3.2-2]", topic) // [MQTT-3.3.2-2]
	}
	p.Topic = string(topic)
	if p.QoS > 0 {
		if p.PacketID, err = d.readPacketID(); err != nil { // [MQTT-2.3.1-1]
			return nil, err
		}
	}
	if v == V5 {
		if err := p.Properties.decode(&d, propsPublish); err != nil {
			return nil, err
		}
	}
	if len(d.b) > 0 {
		p.Payload = bytes.Clone(d.b) // the only copy of the payload
	}
	return p, nil
}

// remaining returns the remaining length and the property length of p.
func (p *Publish) remaining(v Version) (rem, plen int, err error) {
	var s sizer
	s.str("topic name", len(p.Topic))
	if p.QoS > 0 {
		s.n += 2
	}
	plen = s.props(&p.Properties, v)
	s.n += len(p.Payload)
	switch {
	case p.QoS > 2:
		s.fail(fmt.Errorf("QoS %d", p.QoS))
	case p.QoS > 0 && p.PacketID == 0:
		s.fail(errPacketIDZero)
	case p.QoS == 0 && p.Dup:
		s.fail(fmt.Errorf("DUP set with QoS 0"))
	}
	return s.n, plen, s.check(PUBLISH, v)
}

// Size returns the encoded size of p for version v, fixed header included:
// the size the 5.0 maximum packet size applies to.
func (p *Publish) Size(v Version) int {
	var s sizer
	s.str("topic name", len(p.Topic))
	if p.QoS > 0 {
		s.n += 2
	}
	s.props(&p.Properties, v)
	s.n += len(p.Payload)
	return 1 + varIntLen(s.n) + s.n
}

// Append encodes p for version v. Properties are sent in 5.0 only. It
// fails for QoS 3, for QoS 0 with DUP and for QoS > 0 with packet
// identifier 0. It allocates only to grow dst.
func (p *Publish) Append(dst []byte, v Version) ([]byte, error) {
	rem, plen, err := p.remaining(v)
	if err != nil {
		return dst, err
	}
	h := byte(PUBLISH)<<4 | p.QoS<<1
	if p.Dup {
		h |= 8
	}
	if p.Retain {
		h |= 1
	}
	dst = appendHeader(dst, h, rem)
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if v == V5 {
		dst = p.Properties.appendTo(dst, plen)
	}
	return append(dst, p.Payload...), nil
}
