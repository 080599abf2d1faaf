package packet

import (
	"fmt"
	"math/bits"
)

// propKind selects a row of the 5.0 property allow table (spec table 2-4).
type propKind uint8

const (
	propsConnect propKind = iota
	propsConnack
	propsPublish
	propsWill
	propsAck // PUBACK, PUBREC, PUBREL, PUBCOMP
	propsSubscribe
	propsSuback
	propsUnsubscribe
	propsUnsuback
	propsDisconnect
	propsAuth
	numPropKinds
)

// propType is the data type of a property value (5.0 §2.2.2.2).
type propType uint8

const (
	ptByte propType = iota + 1
	ptUint16
	ptUint32
	ptVarInt
	ptString
	ptBinary
	ptPair
)

// propTypes maps each known property identifier to its type; 0 is unknown.
var propTypes = [PropSharedSubscriptionAvailable + 1]propType{
	PropPayloadFormatIndicator:          ptByte,
	PropMessageExpiryInterval:           ptUint32,
	PropContentType:                     ptString,
	PropResponseTopic:                   ptString,
	PropCorrelationData:                 ptBinary,
	PropSubscriptionIdentifier:          ptVarInt,
	PropSessionExpiryInterval:           ptUint32,
	PropAssignedClientIdentifier:        ptString,
	PropServerKeepAlive:                 ptUint16,
	PropAuthenticationMethod:            ptString,
	PropAuthenticationData:              ptBinary,
	PropRequestProblemInformation:       ptByte,
	PropWillDelayInterval:               ptUint32,
	PropRequestResponseInformation:      ptByte,
	PropResponseInformation:             ptString,
	PropServerReference:                 ptString,
	PropReasonString:                    ptString,
	PropReceiveMaximum:                  ptUint16,
	PropTopicAliasMaximum:               ptUint16,
	PropTopicAlias:                      ptUint16,
	PropMaximumQoS:                      ptByte,
	PropRetainAvailable:                 ptByte,
	PropUserProperty:                    ptPair,
	PropMaximumPacketSize:               ptUint32,
	PropWildcardSubscriptionAvailable:   ptByte,
	PropSubscriptionIdentifierAvailable: ptByte,
	PropSharedSubscriptionAvailable:     ptByte,
}

var propNames = [len(propTypes)]string{
	PropPayloadFormatIndicator:          "payload format indicator",
	PropMessageExpiryInterval:           "message expiry interval",
	PropContentType:                     "content type",
	PropResponseTopic:                   "response topic",
	PropCorrelationData:                 "correlation data",
	PropSubscriptionIdentifier:          "subscription identifier",
	PropSessionExpiryInterval:           "session expiry interval",
	PropAssignedClientIdentifier:        "assigned client identifier",
	PropServerKeepAlive:                 "server keep alive",
	PropAuthenticationMethod:            "authentication method",
	PropAuthenticationData:              "authentication data",
	PropRequestProblemInformation:       "request problem information",
	PropWillDelayInterval:               "will delay interval",
	PropRequestResponseInformation:      "request response information",
	PropResponseInformation:             "response information",
	PropServerReference:                 "server reference",
	PropReasonString:                    "reason string",
	PropReceiveMaximum:                  "receive maximum",
	PropTopicAliasMaximum:               "topic alias maximum",
	PropTopicAlias:                      "topic alias",
	PropMaximumQoS:                      "maximum QoS",
	PropRetainAvailable:                 "retain available",
	PropUserProperty:                    "user property",
	PropMaximumPacketSize:               "maximum packet size",
	PropWildcardSubscriptionAvailable:   "wildcard subscription available",
	PropSubscriptionIdentifierAvailable: "subscription identifier available",
	PropSharedSubscriptionAvailable:     "shared subscription available",
}

func propBits(ids ...PropertyID) (m uint64) {
	for _, id := range ids {
		m |= 1 << id
	}
	return m | 1<<PropUserProperty // user properties are allowed everywhere
}

// propAllowed is spec 5.0 table 2-4: the properties each packet may carry.
var propAllowed = [numPropKinds]uint64{
	propsConnect: propBits(PropSessionExpiryInterval, PropAuthenticationMethod, PropAuthenticationData,
		PropRequestProblemInformation, PropRequestResponseInformation, PropReceiveMaximum,
		PropTopicAliasMaximum, PropMaximumPacketSize),
	propsConnack: propBits(PropSessionExpiryInterval, PropAssignedClientIdentifier, PropServerKeepAlive,
		PropAuthenticationMethod, PropAuthenticationData, PropResponseInformation, PropServerReference,
		PropReasonString, PropReceiveMaximum, PropTopicAliasMaximum, PropMaximumQoS, PropRetainAvailable,
		PropMaximumPacketSize, PropWildcardSubscriptionAvailable, PropSubscriptionIdentifierAvailable,
		PropSharedSubscriptionAvailable),
	propsPublish: propBits(PropPayloadFormatIndicator, PropMessageExpiryInterval, PropContentType,
		PropResponseTopic, PropCorrelationData, PropSubscriptionIdentifier, PropTopicAlias),
	propsWill: propBits(PropPayloadFormatIndicator, PropMessageExpiryInterval, PropContentType,
		PropResponseTopic, PropCorrelationData, PropWillDelayInterval),
	propsAck:         propBits(PropReasonString),
	propsSubscribe:   propBits(PropSubscriptionIdentifier),
	propsSuback:      propBits(PropReasonString),
	propsUnsubscribe: propBits(),
	propsUnsuback:    propBits(PropReasonString),
	propsDisconnect:  propBits(PropSessionExpiryInterval, PropServerReference, PropReasonString),
	propsAuth:        propBits(PropAuthenticationMethod, PropAuthenticationData, PropReasonString),
}

func (p *Properties) byteField(id PropertyID) *byte {
	switch id {
	case PropPayloadFormatIndicator:
		return &p.PayloadFormatIndicator
	case PropRequestProblemInformation:
		return &p.RequestProblemInformation
	case PropRequestResponseInformation:
		return &p.RequestResponseInformation
	case PropMaximumQoS:
		return &p.MaximumQoS
	case PropRetainAvailable:
		return &p.RetainAvailable
	case PropWildcardSubscriptionAvailable:
		return &p.WildcardSubscriptionAvailable
	case PropSubscriptionIdentifierAvailable:
		return &p.SubscriptionIdentifierAvailable
	default: // PropSharedSubscriptionAvailable
		return &p.SharedSubscriptionAvailable
	}
}

func (p *Properties) uint16Field(id PropertyID) *uint16 {
	switch id {
	case PropServerKeepAlive:
		return &p.ServerKeepAlive
	case PropReceiveMaximum:
		return &p.ReceiveMaximum
	case PropTopicAliasMaximum:
		return &p.TopicAliasMaximum
	default: // PropTopicAlias
		return &p.TopicAlias
	}
}

func (p *Properties) uint32Field(id PropertyID) *uint32 {
	switch id {
	case PropMessageExpiryInterval:
		return &p.MessageExpiryInterval
	case PropSessionExpiryInterval:
		return &p.SessionExpiryInterval
	case PropWillDelayInterval:
		return &p.WillDelayInterval
	default: // PropMaximumPacketSize
		return &p.MaximumPacketSize
	}
}

func (p *Properties) stringField(id PropertyID) *string {
	switch id {
	case PropContentType:
		return &p.ContentType
	case PropResponseTopic:
		return &p.ResponseTopic
	case PropAssignedClientIdentifier:
		return &p.AssignedClientIdentifier
	case PropAuthenticationMethod:
		return &p.AuthenticationMethod
	case PropResponseInformation:
		return &p.ResponseInformation
	case PropServerReference:
		return &p.ServerReference
	default: // PropReasonString
		return &p.ReasonString
	}
}

func (p *Properties) binaryField(id PropertyID) *[]byte {
	if id == PropCorrelationData {
		return &p.CorrelationData
	}
	return &p.AuthenticationData
}

// decode reads a property length and the properties that follow into
// *p, which must be the zero value.
func (p *Properties) decode(d *decoder, kind propKind) error {
	n, err := d.readVarInt("property length")
	if err != nil {
		return err
	}
	if n > len(d.b) {
		return d.errorf(ErrMalformedPacket, "property length %d exceeds the %d bytes left", n, len(d.b))
	}
	pd := decoder{b: d.b[:n], pkt: d.pkt}
	d.b = d.b[n:]
	for len(pd.b) > 0 {
		idv, err := pd.readVarInt("property identifier")
		if err != nil {
			return err
		}
		if idv >= len(propTypes) || propTypes[idv] == 0 {
			return pd.errorf(ErrMalformedPacket, "unknown property identifier 0x%02X", idv) // 5.0 §2.2.2.2
		}
		id := PropertyID(idv)
		name := propNames[id]
		if propAllowed[kind]&(1<<id) == 0 {
			return pd.errorf(ErrProtocolError, "property %s not allowed here", name) // 5.0 §2.2.2.2, table 2-4
		}
		if id != PropUserProperty && (id != PropSubscriptionIdentifier || kind != propsPublish) && p.Has(id) {
			return pd.errorf(ErrProtocolError, "property %s included more than once", name) // 5.0 §3.x: "It is a Protocol Error to include ... more than once"
		}
		switch propTypes[id] {
		case ptByte:
			c, err := pd.readByte(name)
			if err != nil {
				return err
			}
			if c > 1 { // every byte property is 0 or 1 (5.0 §3.1.2.11.7, §3.1.2.11.6, §3.2.2.3.4, ...)
				return pd.errorf(ErrProtocolError, "property %s has value %d, must be 0 or 1", name, c)
			}
			*p.byteField(id) = c
		case ptUint16:
			x, err := pd.readUint16(name)
			if err != nil {
				return err
			}
			if x == 0 && id == PropReceiveMaximum { // 5.0 §3.1.2.11.3
				return pd.errorf(ErrProtocolError, "property %s has value 0", name)
			}
			if x == 0 && id == PropTopicAlias { // [MQTT-3.3.2-8]: DISCONNECT 0x94
				return pd.errorf(TopicAliasInvalid, "property %s has value 0", name)
			}
			*p.uint16Field(id) = x
		case ptUint32:
			x, err := pd.readUint32(name)
			if err != nil {
				return err
			}
			if x == 0 && id == PropMaximumPacketSize { // 5.0 §3.1.2.11.4
				return pd.errorf(ErrProtocolError, "property %s has value 0", name)
			}
			*p.uint32Field(id) = x
		case ptVarInt: // subscription identifier
			x, err := pd.readVarInt(name)
			if err != nil {
				return err
			}
			if x == 0 { // 5.0 §3.3.2.3.8
				return pd.errorf(ErrProtocolError, "property %s has value 0", name)
			}
			p.SubscriptionIdentifiers = append(p.SubscriptionIdentifiers, uint32(x))
			continue
		case ptString:
			s, err := pd.readString(name)
			if err != nil {
				return err
			}
			*p.stringField(id) = s
		case ptBinary:
			b, err := pd.readBinary(name)
			if err != nil {
				return err
			}
			*p.binaryField(id) = b
		case ptPair:
			k, err := pd.readString(name + " key")
			if err != nil {
				return err
			}
			v, err := pd.readString(name + " value")
			if err != nil {
				return err
			}
			p.UserProperties = append(p.UserProperties, UserProperty{Key: k, Value: v})
			continue
		}
		p.Set(id)
	}
	return nil
}

// knownProps has a bit for each known property other than the two list
// properties, whose presence is their length.
var knownProps = func() (m uint64) {
	for id, t := range propTypes {
		if t != 0 && t != ptVarInt && t != ptPair {
			m |= 1 << id
		}
	}
	return m
}()

// encodeMask returns the properties to encode, one bit per identifier, so
// that encoding visits them in identifier order.
func (p *Properties) encodeMask() uint64 {
	m := p.present & knownProps
	if len(p.SubscriptionIdentifiers) > 0 {
		m |= 1 << PropSubscriptionIdentifier
	}
	if len(p.UserProperties) > 0 {
		m |= 1 << PropUserProperty
	}
	return m
}

// size returns the encoded size of the present properties, without the
// property length. It fails for a string or binary value over 65535 bytes
// and for a subscription identifier outside 1..268435455.
func (p *Properties) size() (int, error) {
	if p.IsZero() {
		return 0, nil
	}
	var s sizer
	for m := p.encodeMask(); m != 0; m &= m - 1 {
		id := PropertyID(bits.TrailingZeros64(m))
		switch propTypes[id] {
		case ptByte:
			s.n += 2
		case ptUint16:
			s.n += 3
		case ptUint32:
			s.n += 5
		case ptString:
			s.n++
			s.str(propNames[id], len(*p.stringField(id)))
		case ptBinary:
			s.n++
			s.str(propNames[id], len(*p.binaryField(id)))
		case ptVarInt:
			for _, x := range p.SubscriptionIdentifiers {
				if x == 0 || x > MaxRemainingLength {
					s.fail(fmt.Errorf("subscription identifier %d outside 1..%d", x, MaxRemainingLength))
				}
				s.n += 1 + varIntLen(int(x))
			}
		case ptPair:
			for _, u := range p.UserProperties {
				s.n++
				s.str("user property key", len(u.Key))
				s.str("user property value", len(u.Value))
			}
		}
	}
	return s.n, s.err
}

// appendTo appends the property length n (from size) and the present
// properties in identifier order, user properties in their order.
func (p *Properties) appendTo(dst []byte, n int) []byte {
	dst = appendVarInt(dst, n)
	if n == 0 {
		return dst
	}
	for m := p.encodeMask(); m != 0; m &= m - 1 {
		id := PropertyID(bits.TrailingZeros64(m))
		switch propTypes[id] {
		case ptByte:
			dst = append(dst, byte(id), *p.byteField(id))
		case ptUint16:
			dst = appendUint16(append(dst, byte(id)), *p.uint16Field(id))
		case ptUint32:
			dst = appendUint32(append(dst, byte(id)), *p.uint32Field(id))
		case ptString:
			dst = appendString(append(dst, byte(id)), *p.stringField(id))
		case ptBinary:
			dst = appendBinary(append(dst, byte(id)), *p.binaryField(id))
		case ptVarInt:
			for _, x := range p.SubscriptionIdentifiers {
				dst = appendVarInt(append(dst, byte(id)), int(x))
			}
		case ptPair:
			for _, u := range p.UserProperties {
				dst = appendString(appendString(append(dst, byte(id)), u.Key), u.Value)
			}
		}
	}
	return dst
}
