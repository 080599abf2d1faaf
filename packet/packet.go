// Package packet is Petrel's MQTT codec for protocol versions 3.1 (MQIsdp,
// level 3), 3.1.1 (level 4) and 5.0 (level 5).
//
// Decoding works on one complete frame (the bytes after the fixed header) and
// copies a PUBLISH payload at most once; encoding appends to a caller's
// buffer. The package uses the standard library only.
//
// References to the spec are to the OASIS MQTT 3.1.1 and 5.0 standards; clause
// tags such as [MQTT-3.1.2-3] are written on the line that enforces them.
package packet

import "fmt"

// Type is the MQTT control packet type, the high nibble of the first byte.
type Type byte

// The control packet types.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
	"PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
	"PINGRESP", "DISCONNECT", "AUTH"}

// String returns the packet type's name as the spec writes it.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", byte(t))
}

// Version is the protocol level carried in CONNECT.
type Version byte

// The protocol levels Petrel speaks.
const (
	V31  Version = 3 // MQTT 3.1, protocol name "MQIsdp"
	V311 Version = 4 // MQTT 3.1.1, protocol name "MQTT"
	V5   Version = 5 // MQTT 5.0, protocol name "MQTT"
)

// String returns the version as users write it ("3.1", "3.1.1", "5.0").
func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return fmt.Sprintf("Version(%d)", byte(v))
}

// MaxRemainingLength is the largest remaining length a variable byte integer
// of four bytes can express.
const MaxRemainingLength = 268_435_455

// Packet is one decoded MQTT control packet. The concrete types are the
// pointer types of this package (*Connect, *Publish, ...).
type Packet interface {
	// Type returns the packet's control packet type.
	Type() Type
	// Append encodes the packet for protocol version v, appends it (fixed
	// header included) to dst and returns the extended slice. It returns an
	// error when the packet cannot be expressed (for example a remaining
	// length beyond MaxRemainingLength); dst is then returned unchanged.
	Append(dst []byte, v Version) ([]byte, error)
}

// Will is the will message carried in CONNECT.
type Will struct {
	Topic      string
	Payload    []byte
	QoS        byte
	Retain     bool
	Properties Properties // 5.0 will properties
}

// Connect is the CONNECT packet.
type Connect struct {
	ProtocolName string // "MQTT" or "MQIsdp"
	Version      Version
	CleanStart   bool // clean session in 3.x
	KeepAlive    uint16
	ClientID     string
	Will         *Will // nil when the will flag is 0
	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte
	Properties   Properties
}

// Connack is the CONNACK packet. ReasonCode holds a 5.0 reason code; for 3.x
// the codec maps it to and from the 3.x return codes (see ConnackReturnCode).
type Connack struct {
	SessionPresent bool
	ReasonCode     ReasonCode
	Properties     Properties
}

// Publish is the PUBLISH packet. After Decode, Topic and Payload are owned
// by the packet (they do not alias the frame) and share one allocation: a
// Topic kept alone keeps the payload's memory too (clone it to keep it
// apart). Writing into Payload never changes Topic.
type Publish struct {
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      string
	PacketID   uint16 // only when QoS > 0
	Payload    []byte
	Properties Properties
}

// Puback is the PUBACK packet.
type Puback struct {
	PacketID   uint16
	ReasonCode ReasonCode // 5.0 only
	Properties Properties
}

// Pubrec is the PUBREC packet.
type Pubrec struct {
	PacketID   uint16
	ReasonCode ReasonCode // 5.0 only
	Properties Properties
}

// Pubrel is the PUBREL packet.
type Pubrel struct {
	PacketID   uint16
	ReasonCode ReasonCode // 5.0 only
	Properties Properties
}

// Pubcomp is the PUBCOMP packet.
type Pubcomp struct {
	PacketID   uint16
	ReasonCode ReasonCode // 5.0 only
	Properties Properties
}

// Subscription is one topic filter of a SUBSCRIBE with its options.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool // 5.0
	RetainAsPublished bool // 5.0
	RetainHandling    byte // 5.0: 0, 1 or 2
}

// Subscribe is the SUBSCRIBE packet.
type Subscribe struct {
	PacketID      uint16
	Subscriptions []Subscription
	Properties    Properties
}

// Suback is the SUBACK packet. Each reason code is the granted QoS (0, 1, 2)
// or a failure code (>= 0x80); for 3.x every failure encodes as 0x80.
type Suback struct {
	PacketID    uint16
	ReasonCodes []ReasonCode
	Properties  Properties
}

// Unsubscribe is the UNSUBSCRIBE packet.
type Unsubscribe struct {
	PacketID   uint16
	Filters    []string
	Properties Properties
}

// Unsuback is the UNSUBACK packet. ReasonCodes are sent in 5.0 only.
type Unsuback struct {
	PacketID    uint16
	ReasonCodes []ReasonCode
	Properties  Properties
}

// Pingreq is the PINGREQ packet.
type Pingreq struct{}

// Pingresp is the PINGRESP packet.
type Pingresp struct{}

// Disconnect is the DISCONNECT packet. ReasonCode and Properties are 5.0 only.
type Disconnect struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Auth is the 5.0 AUTH packet.
type Auth struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Type returns CONNECT.
func (*Connect) Type() Type { return CONNECT }

// Type returns CONNACK.
func (*Connack) Type() Type { return CONNACK }

// Type returns PUBLISH.
func (*Publish) Type() Type { return PUBLISH }

// Type returns PUBACK.
func (*Puback) Type() Type { return PUBACK }

// Type returns PUBREC.
func (*Pubrec) Type() Type { return PUBREC }

// Type returns PUBREL.
func (*Pubrel) Type() Type { return PUBREL }

// Type returns PUBCOMP.
func (*Pubcomp) Type() Type { return PUBCOMP }

// Type returns SUBSCRIBE.
func (*Subscribe) Type() Type { return SUBSCRIBE }

// Type returns SUBACK.
func (*Suback) Type() Type { return SUBACK }

// Type returns UNSUBSCRIBE.
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }

// Type returns UNSUBACK.
func (*Unsuback) Type() Type { return UNSUBACK }

// Type returns PINGREQ.
func (*Pingreq) Type() Type { return PINGREQ }

// Type returns PINGRESP.
func (*Pingresp) Type() Type { return PINGRESP }

// Type returns DISCONNECT.
func (*Disconnect) Type() Type { return DISCONNECT }

// Type returns AUTH.
func (*Auth) Type() Type { return AUTH }
