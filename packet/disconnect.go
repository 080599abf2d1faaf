package packet

// disconnectCodes are the 5.0 DISCONNECT reason codes (5.0 §3.14.2.1).
var disconnectCodes = newCodeSet(Success, DisconnectWithWill, UnspecifiedError, MalformedPacket,
	ProtocolError, ImplementationSpecificError, NotAuthorized, ServerBusy, ServerShuttingDown,
	KeepAliveTimeout, SessionTakenOver, TopicFilterInvalid, TopicNameInvalid,
	ReceiveMaximumExceeded, TopicAliasInvalid, PacketTooLarge, MessageRateTooHigh, QuotaExceeded,
	AdministrativeAction, PayloadFormatInvalid, RetainNotSupported, QoSNotSupported,
	UseAnotherServer, ServerMoved, SharedSubscriptionsNotSupported, ConnectionRateExceeded,
	MaximumConnectTime, SubscriptionIdentifiersNotSupported, WildcardSubscriptionsNotSupported)

// decodeReasonProps decodes the optional 5.0 reason code and properties of
// DISCONNECT and AUTH: an empty body means Success and no properties, one
// byte a reason code without properties.
func decodeReasonProps(d *decoder, codes *codeSet, kind propKind) (rc ReasonCode, props Properties, err error) {
	if len(d.b) == 0 { // 5.0 §3.14.2.1, §3.15.2.1: remaining length 0 means Success
		return Success, props, nil
	}
	c, _ := d.readByte("reason code")
	rc = ReasonCode(c)
	if !codes.has(rc) {
		return 0, props, d.errorf(ErrProtocolError, "invalid reason code 0x%02X", c) // 5.0 §3.14.2.1, §3.15.2.1
	}
	if len(d.b) > 0 { // 5.0 §3.14.2.2.1, §3.15.2.2.1: remaining length 1 means no properties
		if err := props.decode(d, kind); err != nil {
			return 0, props, err
		}
	}
	return rc, props, d.end()
}

// appendReasonProps encodes DISCONNECT or AUTH for 5.0 in the shortest form.
func appendReasonProps(dst []byte, t Type, rc ReasonCode, props *Properties) ([]byte, error) {
	var s sizer
	plen := 0
	long := !props.IsZero()
	if long {
		plen = s.props(props, V5)
		s.n++
	} else if rc != Success {
		s.n++
	}
	if err := s.check(t, V5); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, byte(t)<<4, s.n)
	if s.n > 0 {
		dst = append(dst, byte(rc))
	}
	if long {
		dst = props.appendTo(dst, plen)
	}
	return dst, nil
}

func decodeDisconnect(body []byte, v Version) (*Disconnect, error) {
	if v != V5 {
		if err := checkEmpty(body, "disconnect"); err != nil { // 3.1.1 §3.14.1
			return nil, err
		}
		return &Disconnect{}, nil
	}
	d := decoder{b: body, pkt: "disconnect"}
	rc, props, err := decodeReasonProps(&d, &disconnectCodes, propsDisconnect)
	if err != nil {
		return nil, err
	}
	return &Disconnect{ReasonCode: rc, Properties: props}, nil
}

// Append encodes p for version v; the reason code and properties are sent
// in 5.0 only.
func (p *Disconnect) Append(dst []byte, v Version) ([]byte, error) {
	if v != V5 {
		var s sizer
		if err := s.check(DISCONNECT, v); err != nil {
			return dst, err
		}
		return append(dst, byte(DISCONNECT)<<4, 0), nil
	}
	return appendReasonProps(dst, DISCONNECT, p.ReasonCode, &p.Properties)
}
