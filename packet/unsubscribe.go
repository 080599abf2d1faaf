package packet

import "fmt"

func decodeUnsubscribe(body []byte, v Version) (*Unsubscribe, error) {
	d := decoder{b: body, pkt: "unsubscribe"}
	p := &Unsubscribe{}
	var err error
	if p.PacketID, err = d.readPacketID(); err != nil { // [MQTT-2.3.1-1]
		return nil, err
	}
	if v == V5 {
		if err := p.Properties.decode(&d, propsUnsubscribe); err != nil {
			return nil, err
		}
	}
	for len(d.b) > 0 {
		f, err := d.readFilter()
		if err != nil {
			return nil, err
		}
		p.Filters = append(p.Filters, f)
	}
	if len(p.Filters) == 0 {
		return nil, d.errorf(ErrProtocolError, "no topic filter [MQTT-3.10.3-2]") // [MQTT-3.10.3-2]
	}
	return p, nil
}

// Append encodes p for version v; properties are sent in 5.0 only.
func (p *Unsubscribe) Append(dst []byte, v Version) ([]byte, error) {
	var s sizer
	s.n = 2
	if p.PacketID == 0 {
		s.fail(errPacketIDZero)
	}
	if len(p.Filters) == 0 {
		s.fail(fmt.Errorf("no topic filter"))
	}
	plen := s.props(&p.Properties, v)
	for _, f := range p.Filters {
		s.str("topic filter", len(f))
	}
	if err := s.check(UNSUBSCRIBE, v); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, byte(UNSUBSCRIBE)<<4|0x2, s.n)
	dst = appendUint16(dst, p.PacketID)
	if v == V5 {
		dst = p.Properties.appendTo(dst, plen)
	}
	for _, f := range p.Filters {
		dst = appendString(dst, f)
	}
	return dst, nil
}
