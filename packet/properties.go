package packet

// PropertyID identifies an MQTT 5.0 property (spec section 2.2.2.2).
type PropertyID byte

// The MQTT 5.0 property identifiers.
const (
	PropPayloadFormatIndicator          PropertyID = 0x01
	PropMessageExpiryInterval           PropertyID = 0x02
	PropContentType                     PropertyID = 0x03
	PropResponseTopic                   PropertyID = 0x08
	PropCorrelationData                 PropertyID = 0x09
	PropSubscriptionIdentifier          PropertyID = 0x0B
	PropSessionExpiryInterval           PropertyID = 0x11
	PropAssignedClientIdentifier        PropertyID = 0x12
	PropServerKeepAlive                 PropertyID = 0x13
	PropAuthenticationMethod            PropertyID = 0x15
	PropAuthenticationData              PropertyID = 0x16
	PropRequestProblemInformation       PropertyID = 0x17
	PropWillDelayInterval               PropertyID = 0x18
	PropRequestResponseInformation      PropertyID = 0x19
	PropResponseInformation             PropertyID = 0x1A
	PropServerReference                 PropertyID = 0x1C
	PropReasonString                    PropertyID = 0x1F
	PropReceiveMaximum                  PropertyID = 0x21
	PropTopicAliasMaximum               PropertyID = 0x22
	PropTopicAlias                      PropertyID = 0x23
	PropMaximumQoS                      PropertyID = 0x24
	PropRetainAvailable                 PropertyID = 0x25
	PropUserProperty                    PropertyID = 0x26
	PropMaximumPacketSize               PropertyID = 0x27
	PropWildcardSubscriptionAvailable   PropertyID = 0x28
	PropSubscriptionIdentifierAvailable PropertyID = 0x29
	PropSharedSubscriptionAvailable     PropertyID = 0x2A
)

// UserProperty is one 5.0 user property (a UTF-8 string pair). Order and
// repeats are preserved.
type UserProperty struct {
	Key, Value string
}

// Properties holds the 5.0 properties of a packet. A property is present
// when its bit is set (Has/Set); the value field alone cannot tell an absent
// property from a zero one. SubscriptionIdentifiers and UserProperties are
// present when non-empty. The zero value is "no properties"; 3.x packets
// always carry the zero value.
type Properties struct {
	present uint64 // bit n set: property n present

	PayloadFormatIndicator          byte
	MessageExpiryInterval           uint32
	ContentType                     string
	ResponseTopic                   string
	CorrelationData                 []byte
	SubscriptionIdentifiers         []uint32 // one in SUBSCRIBE, any number in PUBLISH
	SessionExpiryInterval           uint32
	AssignedClientIdentifier        string
	ServerKeepAlive                 uint16
	AuthenticationMethod            string
	AuthenticationData              []byte
	RequestProblemInformation       byte
	WillDelayInterval               uint32
	RequestResponseInformation      byte
	ResponseInformation             string
	ServerReference                 string
	ReasonString                    string
	ReceiveMaximum                  uint16
	TopicAliasMaximum               uint16
	TopicAlias                      uint16
	MaximumQoS                      byte
	RetainAvailable                 byte
	UserProperties                  []UserProperty
	MaximumPacketSize               uint32
	WildcardSubscriptionAvailable   byte
	SubscriptionIdentifierAvailable byte
	SharedSubscriptionAvailable     byte
}

// Has reports whether property id is present.
func (p *Properties) Has(id PropertyID) bool {
	switch id {
	case PropSubscriptionIdentifier:
		return len(p.SubscriptionIdentifiers) > 0
	case PropUserProperty:
		return len(p.UserProperties) > 0
	}
	return id < 64 && p.present&(1<<id) != 0
}

// Set marks property id as present; set its value field as well.
func (p *Properties) Set(id PropertyID) {
	if id < 64 {
		p.present |= 1 << id
	}
}

// Clear marks property id as absent (and empties a list property).
func (p *Properties) Clear(id PropertyID) {
	switch id {
	case PropSubscriptionIdentifier:
		p.SubscriptionIdentifiers = nil
	case PropUserProperty:
		p.UserProperties = nil
	}
	if id < 64 {
		p.present &^= 1 << id
	}
}

// IsZero reports whether no property is present.
func (p *Properties) IsZero() bool {
	return p.present == 0 && len(p.SubscriptionIdentifiers) == 0 && len(p.UserProperties) == 0
}
