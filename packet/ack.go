package packet

// Reason codes allowed in PUBACK and PUBREC (5.0 §3.4.2.1, §3.5.2.1) and in
// PUBREL and PUBCOMP (5.0 §3.6.2.1, §3.7.2.1).
var (
	pubackCodes = newCodeSet(Success, NoMatchingSubscribers, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicNameInvalid, PacketIdentifierInUse,
		QuotaExceeded, PayloadFormatInvalid)
	pubrelCodes = newCodeSet(Success, PacketIdentifierNotFound)
)

// decodeAck decodes the body of PUBACK, PUBREC, PUBREL or PUBCOMP.
func decodeAck(body []byte, v Version, pkt string, codes codeSet) (id uint16, rc ReasonCode, props Properties, err error) {
	d := decoder{b: body, pkt: pkt}
	if v != V5 && len(body) != 2 {
		return 0, 0, props, d.errorf(ErrMalformedPacket, "remaining length %d, must be 2", len(body)) // 3.1.1 §3.4.1, §3.5.1, §3.6.1, §3.7.1
	}
	if id, err = d.readPacketID(); err != nil { // [MQTT-2.3.1-1]
		return 0, 0, props, err
	}
	if v == V5 && len(d.b) > 0 { // 5.0 §3.4.2.1: remaining length 2 means Success and no properties
		c, _ := d.readByte("reason code")
		rc = ReasonCode(c)
		if !codes.has(rc) {
			return 0, 0, props, d.errorf(ErrProtocolError, "invalid reason code 0x%02X", c) // 5.0 §3.4.2.1
		}
		if len(d.b) > 0 { // 5.0 §3.4.2.2.1: remaining length 3 means no properties
			if err := props.decode(&d, propsAck); err != nil {
				return 0, 0, props, err
			}
		}
	}
	return id, rc, props, d.end()
}

// appendAck encodes PUBACK, PUBREC, PUBREL or PUBCOMP, in the shortest 5.0
// form: no reason code for Success without properties, no property length
// without properties.
func appendAck(dst []byte, v Version, t Type, id uint16, rc ReasonCode, props *Properties) ([]byte, error) {
	var s sizer
	s.n = 2
	plen := 0
	if id == 0 {
		s.fail(errPacketIDZero)
	}
	long := v == V5 && !props.IsZero()
	if long {
		plen = s.props(props, v)
		s.n++
	} else if v == V5 && rc != Success {
		s.n++
	}
	if err := s.check(t, v); err != nil {
		return dst, err
	}
	h := byte(t) << 4
	if t == PUBREL {
		h |= 0x2
	}
	dst = appendHeader(dst, h, s.n)
	dst = appendUint16(dst, id)
	if s.n > 2 {
		dst = append(dst, byte(rc))
	}
	if long {
		dst = props.appendTo(dst, plen)
	}
	return dst, nil
}

// Append encodes p for version v; the reason code and properties are sent
// in 5.0 only.
func (p *Puback) Append(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, v, PUBACK, p.PacketID, p.ReasonCode, &p.Properties)
}

// Append encodes p for version v; the reason code and properties are sent
// in 5.0 only.
func (p *Pubrec) Append(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, v, PUBREC, p.PacketID, p.ReasonCode, &p.Properties)
}

// Append encodes p for version v; the reason code and properties are sent
// in 5.0 only.
func (p *Pubrel) Append(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, v, PUBREL, p.PacketID, p.ReasonCode, &p.Properties)
}

// Append encodes p for version v; the reason code and properties are sent
// in 5.0 only.
func (p *Pubcomp) Append(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, v, PUBCOMP, p.PacketID, p.ReasonCode, &p.Properties)
}
