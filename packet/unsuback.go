package packet

// unsubackCodes are the 5.0 UNSUBACK reason codes (5.0 §3.11.3).
var unsubackCodes = newCodeSet(Success, NoSubscriptionExisted, UnspecifiedError,
	ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse)

func decodeUnsuback(body []byte, v Version) (*Unsuback, error) {
	d := decoder{b: body, pkt: "unsuback"}
	if v != V5 && len(body) != 2 {
		return nil, d.errorf(ErrMalformedPacket, "remaining length %d, must be 2", len(body)) // 3.1.1 §3.11.1
	}
	p := &Unsuback{}
	var err error
	if p.PacketID, err = d.readPacketID(); err != nil { // [MQTT-2.3.1-1]
		return nil, err
	}
	if v != V5 {
		return p, nil
	}
	if err := p.Properties.decode(&d, propsUnsuback); err != nil {
		return nil, err
	}
	if len(d.b) == 0 {
		return nil, d.errorf(ErrProtocolError, "no reason code [MQTT-3.11.3-1]") // 5.0 [MQTT-3.11.3-1]: one per topic filter
	}
	p.ReasonCodes = make([]ReasonCode, len(d.b))
	for i, c := range d.b {
		if !unsubackCodes.has(ReasonCode(c)) {
			return nil, d.errorf(ErrProtocolError, "invalid reason code 0x%02X", c) // 5.0 §3.11.3
		}
		p.ReasonCodes[i] = ReasonCode(c)
	}
	return p, nil
}

// Append encodes p for version v; reason codes and properties are sent in
// 5.0 only.
func (p *Unsuback) Append(dst []byte, v Version) ([]byte, error) {
	var s sizer
	s.n = 2
	if p.PacketID == 0 {
		s.fail(errPacketIDZero)
	}
	plen := s.props(&p.Properties, v)
	if v == V5 {
		s.n += len(p.ReasonCodes)
	}
	if err := s.check(UNSUBACK, v); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, byte(UNSUBACK)<<4, s.n)
	dst = appendUint16(dst, p.PacketID)
	if v == V5 {
		dst = p.Properties.appendTo(dst, plen)
		for _, c := range p.ReasonCodes {
			dst = append(dst, byte(c))
		}
	}
	return dst, nil
}
