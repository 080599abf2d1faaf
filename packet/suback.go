package packet

// subackCodes are the 5.0 SUBACK reason codes (5.0 §3.9.3).
var subackCodes = newCodeSet(Success, GrantedQoS1, GrantedQoS2, UnspecifiedError,
	ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse,
	QuotaExceeded, SharedSubscriptionsNotSupported, SubscriptionIdentifiersNotSupported,
	WildcardSubscriptionsNotSupported)

func decodeSuback(body []byte, v Version) (*Suback, error) {
	d := decoder{b: body, pkt: "suback"}
	p := &Suback{}
	var err error
	if p.PacketID, err = d.readPacketID(); err != nil { // [MQTT-2.3.1-1]
		return nil, err
	}
	if v == V5 {
		if err := p.Properties.decode(&d, propsSuback); err != nil {
			return nil, err
		}
	}
	if len(d.b) == 0 {
		return nil, d.errorf(ErrProtocolError, "no reason code [MQTT-3.8.4-6]") // 3.1.1 [MQTT-3.8.4-5], 5.0 [MQTT-3.8.4-6]: one per topic filter
	}
	p.ReasonCodes = make([]ReasonCode, len(d.b))
	for i, c := range d.b {
		rc := ReasonCode(c)
		if v == V5 {
			if !subackCodes.has(rc) {
				return nil, d.errorf(ErrProtocolError, "invalid reason code 0x%02X", c) // 5.0 §3.9.3
			}
		} else if c > 2 && c != 0x80 {
			return nil, d.errorf(ErrMalformedPacket, "invalid return code 0x%02X [MQTT-3.9.3-2]", c) // 3.1.1 [MQTT-3.9.3-2]
		}
		p.ReasonCodes[i] = rc
	}
	return p, nil
}

// Append encodes p for version v. In 3.x every code other than 0, 1 and 2
// is sent as 0x80 (failure) and no properties are sent.
func (p *Suback) Append(dst []byte, v Version) ([]byte, error) {
	var s sizer
	s.n = 2 + len(p.ReasonCodes)
	if p.PacketID == 0 {
		s.fail(errPacketIDZero)
	}
	plen := s.props(&p.Properties, v)
	if err := s.check(SUBACK, v); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, byte(SUBACK)<<4, s.n)
	dst = appendUint16(dst, p.PacketID)
	if v == V5 {
		dst = p.Properties.appendTo(dst, plen)
	}
	for _, c := range p.ReasonCodes {
		if v != V5 && c > 2 {
			c = 0x80 // [MQTT-3.9.3-2]
		}
		dst = append(dst, byte(c))
	}
	return dst, nil
}
