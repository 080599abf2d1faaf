package packet

import "fmt"

func decodeSubscribe(body []byte, v Version) (*Subscribe, error) {
	d := decoder{b: body, pkt: "subscribe"}
	p := &Subscribe{}
	var err error
	if p.PacketID, err = d.readPacketID(); err != nil { // [MQTT-2.3.1-1]
		return nil, err
	}
	if v == V5 {
		if err := p.Properties.decode(&d, propsSubscribe); err != nil {
			return nil, err
		}
	}
	for len(d.b) > 0 {
		f, err := d.readFilter()
		if err != nil {
			return nil, err
		}
		o, err := d.readByte("subscription options")
		if err != nil {
			return nil, err
		}
		s := Subscription{Filter: f, QoS: o & 3}
		if v == V5 {
			if o&0xc0 != 0 {
				return nil, d.errorf(ErrMalformedPacket, "reserved subscription option bits set 0x%02X [MQTT-3.8.3-5]", o) // 5.0 [MQTT-3.8.3-5]
			}
			s.NoLocal = o&0x04 != 0
			s.RetainAsPublished = o&0x08 != 0
			s.RetainHandling = o >> 4 & 3
			if s.RetainHandling == 3 {
				return nil, d.errorf(ErrProtocolError, "retain handling 3") // 5.0 §3.8.3.1
			}
		} else if o&0xfc != 0 {
			return nil, d.errorf(ErrMalformedPacket, "reserved subscription option bits set 0x%02X [MQTT-3.8.3-4]", o) // 3.1.1 [MQTT-3.8.3-4]
		}
		if s.QoS == 3 {
			return nil, d.errorf(ErrMalformedPacket, "QoS 3 [MQTT-3.8.3-4]") // 3.1.1 [MQTT-3.8.3-4], 5.0 §3.8.3.1
		}
		p.Subscriptions = append(p.Subscriptions, s)
	}
	if len(p.Subscriptions) == 0 {
		return nil, d.errorf(ErrProtocolError, "no topic filter [MQTT-3.8.3-3]") // [MQTT-3.8.3-3]
	}
	return p, nil
}

// Append encodes p for version v. The 5.0 subscription options (NoLocal,
// RetainAsPublished, RetainHandling) and properties are sent in 5.0 only.
func (p *Subscribe) Append(dst []byte, v Version) ([]byte, error) {
	var s sizer
	s.n = 2
	if p.PacketID == 0 {
		s.fail(errPacketIDZero)
	}
	plen := s.props(&p.Properties, v)
	if len(p.Subscriptions) == 0 {
		s.fail(fmt.Errorf("no topic filter"))
	}
	for i := range p.Subscriptions {
		sub := &p.Subscriptions[i]
		s.str("topic filter", len(sub.Filter))
		s.n++
		if sub.QoS > 2 || sub.RetainHandling > 2 {
			s.fail(fmt.Errorf("subscription %q: QoS %d, retain handling %d", sub.Filter, sub.QoS, sub.RetainHandling))
		}
	}
	if err := s.check(SUBSCRIBE, v); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, byte(SUBSCRIBE)<<4|0x2, s.n)
	dst = appendUint16(dst, p.PacketID)
	if v == V5 {
		dst = p.Properties.appendTo(dst, plen)
	}
	for i := range p.Subscriptions {
		sub := &p.Subscriptions[i]
		o := sub.QoS
		if v == V5 {
			if sub.NoLocal {
				o |= 0x04
			}
			if sub.RetainAsPublished {
				o |= 0x08
			}
			o |= sub.RetainHandling << 4
		}
		dst = append(appendString(dst, sub.Filter), o)
	}
	return dst, nil
}
