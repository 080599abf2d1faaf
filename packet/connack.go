package packet

// connackCodes are the 5.0 CONNACK reason codes (5.0 §3.2.2.2).
var connackCodes = newCodeSet(Success, UnspecifiedError, MalformedPacket, ProtocolError,
	ImplementationSpecificError, UnsupportedProtocolVersion, ClientIdentifierNotValid,
	BadUsernameOrPassword, NotAuthorized, ServerUnavailable, ServerBusy, Banned,
	BadAuthenticationMethod, TopicNameInvalid, PacketTooLarge, QuotaExceeded,
	PayloadFormatInvalid, RetainNotSupported, QoSNotSupported, UseAnotherServer, ServerMoved,
	ConnectionRateExceeded)

func decodeConnack(body []byte, v Version) (*Connack, error) {
	d := decoder{b: body, pkt: "connack"}
	flags, err := d.readByte("acknowledge flags")
	if err != nil {
		return nil, err
	}
	code, err := d.readByte("return code")
	if err != nil {
		return nil, err
	}
	c := &Connack{}
	if v == V31 {
		// 3.1: the first byte is reserved and unused; the session present
		// flag does not exist.
	} else if flags&^1 != 0 {
		return nil, d.errorf(ErrMalformedPacket, "reserved acknowledge flags 0x%02X set [MQTT-3.2.2-1]", flags) // 3.1.1 §3.2.2.1, 5.0 [MQTT-3.2.2-1]
	} else {
		c.SessionPresent = flags&1 != 0
	}
	if v == V5 {
		c.ReasonCode = ReasonCode(code)
		if !connackCodes.has(c.ReasonCode) {
			return nil, d.errorf(ErrProtocolError, "invalid reason code 0x%02X", code) // 5.0 §3.2.2.2
		}
		if err := c.Properties.decode(&d, propsConnack); err != nil {
			return nil, err
		}
	} else {
		rc, ok := ConnackReasonCode(code)
		if !ok {
			return nil, d.errorf(ErrMalformedPacket, "unknown return code %d", code) // 3.1.1 §3.2.2.3
		}
		c.ReasonCode = rc
	}
	if c.SessionPresent && c.ReasonCode != Success {
		return nil, d.errorf(ErrProtocolError, "session present with a failure code [MQTT-3.2.2-4]") // 3.1.1 [MQTT-3.2.2-4], 5.0 [MQTT-3.2.2-6]
	}
	if err := d.end(); err != nil { // 3.1.1 §3.2.1: remaining length 2
		return nil, err
	}
	return c, nil
}

// Append encodes p for version v. For 3.x the reason code is sent as
// ConnackReturnCode(p.ReasonCode) and no properties are sent; for 3.1 the
// session present bit is always 0. Session present is sent as 0 with a
// failure code ([MQTT-3.2.2-4]).
func (p *Connack) Append(dst []byte, v Version) ([]byte, error) {
	var s sizer
	s.n = 2
	plen := s.props(&p.Properties, v)
	if err := s.check(CONNACK, v); err != nil {
		return dst, err
	}
	var flags byte
	code := byte(p.ReasonCode)
	if v != V5 {
		code = ConnackReturnCode(p.ReasonCode)
	}
	if p.SessionPresent && code == 0 && v != V31 {
		flags = 1
	}
	dst = appendHeader(dst, byte(CONNACK)<<4, s.n)
	dst = append(dst, flags, code)
	if v == V5 {
		dst = p.Properties.appendTo(dst, plen)
	}
	return dst, nil
}
