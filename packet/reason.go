package packet

import "fmt"

// ReasonCode is an MQTT 5.0 reason code. It implements error, so one value
// is both the wire code and the Go error: decode errors wrap
// ErrMalformedPacket or ErrProtocolError, and errors.As recovers the code.
type ReasonCode byte

// The MQTT 5.0 reason codes (spec section 2.4).
const (
	Success                             ReasonCode = 0x00 // also Normal disconnection, Granted QoS 0
	GrantedQoS1                         ReasonCode = 0x01
	GrantedQoS2                         ReasonCode = 0x02
	DisconnectWithWill                  ReasonCode = 0x04
	NoMatchingSubscribers               ReasonCode = 0x10
	NoSubscriptionExisted               ReasonCode = 0x11
	ContinueAuthentication              ReasonCode = 0x18
	ReAuthenticate                      ReasonCode = 0x19
	UnspecifiedError                    ReasonCode = 0x80
	MalformedPacket                     ReasonCode = 0x81
	ProtocolError                       ReasonCode = 0x82
	ImplementationSpecificError         ReasonCode = 0x83
	UnsupportedProtocolVersion          ReasonCode = 0x84
	ClientIdentifierNotValid            ReasonCode = 0x85
	BadUsernameOrPassword               ReasonCode = 0x86
	NotAuthorized                       ReasonCode = 0x87
	ServerUnavailable                   ReasonCode = 0x88
	ServerBusy                          ReasonCode = 0x89
	Banned                              ReasonCode = 0x8A
	ServerShuttingDown                  ReasonCode = 0x8B
	BadAuthenticationMethod             ReasonCode = 0x8C
	KeepAliveTimeout                    ReasonCode = 0x8D
	SessionTakenOver                    ReasonCode = 0x8E
	TopicFilterInvalid                  ReasonCode = 0x8F
	TopicNameInvalid                    ReasonCode = 0x90
	PacketIdentifierInUse               ReasonCode = 0x91
	PacketIdentifierNotFound            ReasonCode = 0x92
	ReceiveMaximumExceeded              ReasonCode = 0x93
	TopicAliasInvalid                   ReasonCode = 0x94
	PacketTooLarge                      ReasonCode = 0x95
	MessageRateTooHigh                  ReasonCode = 0x96
	QuotaExceeded                       ReasonCode = 0x97
	AdministrativeAction                ReasonCode = 0x98
	PayloadFormatInvalid                ReasonCode = 0x99
	RetainNotSupported                  ReasonCode = 0x9A
	QoSNotSupported                     ReasonCode = 0x9B
	UseAnotherServer                    ReasonCode = 0x9C
	ServerMoved                         ReasonCode = 0x9D
	SharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ConnectionRateExceeded              ReasonCode = 0x9F
	MaximumConnectTime                  ReasonCode = 0xA0
	SubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

// Decode errors. Every error Decode returns wraps one of these (or, for a
// 5.0 Topic Alias of 0, TopicAliasInvalid [MQTT-3.3.2-8]), so callers
// choose the DISCONNECT reason with errors.As(err, &code).
var (
	// ErrMalformedPacket: the bytes do not form a valid packet.
	ErrMalformedPacket error = MalformedPacket
	// ErrProtocolError: a well-formed packet that the protocol forbids.
	ErrProtocolError error = ProtocolError
	// ErrUnsupportedVersion: CONNECT with an unknown protocol level
	// (answered with CONNACK 0x01 in 3.x, 0x84 in 5.0).
	ErrUnsupportedVersion error = UnsupportedProtocolVersion
	// ErrPacketTooLarge: remaining length beyond the configured maximum.
	ErrPacketTooLarge error = PacketTooLarge
)

var reasonNames = map[ReasonCode]string{
	Success: "success", GrantedQoS1: "granted QoS 1", GrantedQoS2: "granted QoS 2",
	DisconnectWithWill: "disconnect with will message", NoMatchingSubscribers: "no matching subscribers",
	NoSubscriptionExisted: "no subscription existed", ContinueAuthentication: "continue authentication",
	ReAuthenticate: "re-authenticate", UnspecifiedError: "unspecified error",
	MalformedPacket: "malformed packet", ProtocolError: "protocol error",
	ImplementationSpecificError: "implementation specific error",
	UnsupportedProtocolVersion:  "unsupported protocol version",
	ClientIdentifierNotValid:    "client identifier not valid", BadUsernameOrPassword: "bad user name or password",
	NotAuthorized: "not authorized", ServerUnavailable: "server unavailable", ServerBusy: "server busy",
	Banned: "banned", ServerShuttingDown: "server shutting down", BadAuthenticationMethod: "bad authentication method",
	KeepAliveTimeout: "keep alive timeout", SessionTakenOver: "session taken over",
	TopicFilterInvalid: "topic filter invalid", TopicNameInvalid: "topic name invalid",
	PacketIdentifierInUse: "packet identifier in use", PacketIdentifierNotFound: "packet identifier not found",
	ReceiveMaximumExceeded: "receive maximum exceeded", TopicAliasInvalid: "topic alias invalid",
	PacketTooLarge: "packet too large", MessageRateTooHigh: "message rate too high",
	QuotaExceeded: "quota exceeded", AdministrativeAction: "administrative action",
	PayloadFormatInvalid: "payload format invalid", RetainNotSupported: "retain not supported",
	QoSNotSupported: "QoS not supported", UseAnotherServer: "use another server", ServerMoved: "server moved",
	SharedSubscriptionsNotSupported: "shared subscriptions not supported",
	ConnectionRateExceeded:          "connection rate exceeded", MaximumConnectTime: "maximum connect time",
	SubscriptionIdentifiersNotSupported: "subscription identifiers not supported",
	WildcardSubscriptionsNotSupported:   "wildcard subscriptions not supported",
}

// String returns the spec's name for the code.
func (r ReasonCode) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason code 0x%02X", byte(r))
}

// Error returns the code's name and value, e.g. "packet: malformed packet (0x81)".
func (r ReasonCode) Error() string {
	return fmt.Sprintf("packet: %s (0x%02X)", r.String(), byte(r))
}

// IsError reports whether the code signals a failure (0x80 and above).
func (r ReasonCode) IsError() bool { return r >= 0x80 }

// ConnackReturnCode maps a 5.0 CONNACK reason code to the 3.x return code
// (spec 3.1.1 table 3.1): 0 accepted, 1 unacceptable protocol version,
// 2 identifier rejected, 3 server unavailable, 4 bad user name or password,
// 5 not authorized.
func ConnackReturnCode(r ReasonCode) byte {
	switch r {
	case Success:
		return 0
	case UnsupportedProtocolVersion:
		return 1
	case ClientIdentifierNotValid:
		return 2
	case BadUsernameOrPassword, BadAuthenticationMethod:
		return 4
	case NotAuthorized, Banned:
		return 5
	default:
		return 3
	}
}

// ConnackReasonCode maps a 3.x CONNACK return code to the 5.0 reason code;
// it is the inverse of ConnackReturnCode. ok is false for codes above 5.
func ConnackReasonCode(rc byte) (r ReasonCode, ok bool) {
	switch rc {
	case 0:
		return Success, true
	case 1:
		return UnsupportedProtocolVersion, true
	case 2:
		return ClientIdentifierNotValid, true
	case 3:
		return ServerUnavailable, true
	case 4:
		return BadUsernameOrPassword, true
	case 5:
		return NotAuthorized, true
	}
	return 0, false
}
