package packet

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf8"
	"unsafe"
)

func decodePublish(flags byte, body []byte, v Version) (*Publish, error) {
	p := new(Publish)
	if err := decodePublishInto(p, flags, body, v, true); err != nil {
		return nil, err
	}
	return p, nil
}

// DecodePublish is Decode for a PUBLISH, into p, which it resets first: a
// reader may reuse one Publish for many packets. The topic and payload do
// not share memory with body, nor with p's previous contents.
func DecodePublish(p *Publish, header byte, body []byte, v Version) error {
	return decodeReused(p, header, body, v, true)
}

// DecodePublishInPlace is DecodePublish leaving the topic and payload in
// body: p.Topic and p.Payload are valid only until body's memory is reused,
// and a caller that keeps them copies them (a broker copies them once, into
// the message it routes). The properties are copies as always.
func DecodePublishInPlace(p *Publish, header byte, body []byte, v Version) error {
	return decodeReused(p, header, body, v, false)
}

// decodeReused checks the header and version, resets p and decodes into it.
func decodeReused(p *Publish, header byte, body []byte, v Version, copyData bool) error {
	if t := Type(header >> 4); t != PUBLISH {
		return fmt.Errorf("packet: DecodePublish on a %v", t)
	}
	if !v.valid() {
		return fmt.Errorf("%w: PUBLISH: unknown protocol version %d", ErrUnsupportedVersion, byte(v))
	}
	*p = Publish{}
	return decodePublishInto(p, header&0x0f, body, v, copyData)
}

// decodePublishInto decodes a PUBLISH body into the zero p; with copyData
// its topic and payload are copied out of body, otherwise they alias it.
func decodePublishInto(p *Publish, flags byte, body []byte, v Version, copyData bool) error {
	d := decoder{b: body, pkt: "publish"}
	p.Dup, p.QoS, p.Retain = flags&8 != 0, flags>>1&3, flags&1 != 0
	if p.QoS == 3 {
		return d.errorf(ErrMalformedPacket, "QoS 3 [MQTT-3.3.1-4]") // [MQTT-3.3.1-4]
	}
	if p.Dup && p.QoS == 0 {
		return d.errorf(ErrMalformedPacket, "DUP set with QoS 0 [MQTT-3.3.1-2]") // [MQTT-3.3.1-2]
	}
	topic, err := d.readTopicAlias() // [MQTT-3.3.2-1]
	if err != nil {
		return err
	}
	if len(topic) == 0 && v != V5 {
		return d.errorf(ErrMalformedPacket, "empty topic name [MQTT-4.7.3-1]") // [MQTT-4.7.3-1]; 5.0 allows it with a topic alias (the broker checks)
	}
	if p.QoS > 0 {
		if p.PacketID, err = d.readPacketID(); err != nil { // [MQTT-2.3.1-1]
			return err
		}
	}
	if v == V5 {
		if err := p.Properties.decode(&d, propsPublish); err != nil {
			return err
		}
	}
	if !copyData {
		if len(topic) > 0 {
			p.Topic = unsafe.String(&topic[0], len(topic))
		}
		if len(d.b) > 0 {
			p.Payload = d.b[:len(d.b):len(d.b)]
		}
		return nil
	}
	// The only copy of topic and payload, in one allocation: the topic is a
	// string over the first bytes, which nothing writes to afterwards (the
	// payload slice starts after them, its capacity ends with it).
	if n := len(topic) + len(d.b); n > 0 {
		buf := make([]byte, n)
		copy(buf, topic)
		copy(buf[len(topic):], d.b)
		if len(topic) > 0 {
			p.Topic = unsafe.String(&buf[0], len(topic))
		}
		if len(d.b) > 0 {
			p.Payload = buf[len(topic):n:n]
		}
	}
	return nil
}

// readTopicAlias reads a PUBLISH topic name, aliasing the body: a UTF-8
// string [MQTT-1.5.3-1] [MQTT-1.5.3-2] without wildcard characters
// [MQTT-3.3.2-2], in one pass over a plain ASCII name; from the first
// other byte on, the UTF-8 checks and the rest of the wildcard scan.
func (d *decoder) readTopicAlias() ([]byte, error) {
	s, err := d.readBinaryAlias("topic name")
	if err != nil {
		return nil, err
	}
	for i, b := range s {
		switch {
		case b == '+' || b == '#':
			return nil, d.wildcardInTopic(s)
		case b == 0 || b >= utf8.RuneSelf:
			// Not plain ASCII: the UTF-8 checks, then the rest of the
			// wildcard scan.
			if _, err := d.checkString("topic name", s); err != nil {
				return nil, err
			}
			if bytes.ContainsAny(s[i+1:], "+#") {
				return nil, d.wildcardInTopic(s)
			}
			return s, nil
		}
	}
	return s, nil
}

func (d *decoder) wildcardInTopic(s []byte) error {
	return d.errorf(ErrMalformedPacket, "wildcard in topic name %q [MQTT-3.3.2-2]", s) // [MQTT-3.3.2-2]
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
	dst, err := p.appendHead(dst, v, len(p.Payload))
	if err != nil {
		return dst, err
	}
	return append(dst, p.Payload...), nil
}

// AppendHeader is Append without the payload: it encodes p up to where
// the payload starts (the remaining length counts the payload), so that
// the caller can write p.Payload after it from where it is, without
// copying it into dst. It fails as Append does.
func (p *Publish) AppendHeader(dst []byte, v Version) ([]byte, error) {
	return p.appendHead(dst, v, 0)
}

// appendHead appends p up to its payload, having grown dst for room bytes
// of the payload as well.
func (p *Publish) appendHead(dst []byte, v Version, room int) ([]byte, error) {
	rem, plen, err := p.remaining(v)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, 1+varIntLen(rem)+rem-len(p.Payload)+room)
	h := byte(PUBLISH)<<4 | p.QoS<<1
	if p.Dup {
		h |= 8
	}
	if p.Retain {
		h |= 1
	}
	dst = appendVarInt(append(dst, h), rem)
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if v == V5 {
		dst = p.Properties.appendTo(dst, plen)
	}
	return dst, nil
}
