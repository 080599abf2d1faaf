// Package session holds the state of one MQTT client session: its
// subscriptions, its bounded outbound queue, the inflight window with packet
// identifiers, inbound QoS 2 state and its will. It owns no goroutine and
// touches no network connection: the broker's connection writer drains it.
package session

import (
	"time"
	"unsafe"

	"github.com/petrel-mqtt/petrel/packet"
)

// Message is an application message as the broker routes it. A Message is
// immutable once routed: it is shared by every queue it is delivered to.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte // QoS as published
	Retain  bool // retain flag as published
	// stampHi and stampLo are the receipt time of a message sampled for
	// the publish-to-delivery latency (SetStamp); they fill the padding
	// after Retain, so the Message stays 96 bytes.
	stampHi    uint16
	stampLo    uint32
	Properties *packet.Properties // 5.0 properties to forward; nil for none
	Origin     string             // the publisher's session ID, tenant and client id ("" for the broker)
	Expiry     time.Time          // 5.0 message expiry; zero for none
}

// SetStamp records t (a positive count of microseconds on the caller's
// clock, below 2^48) as the message's receipt time. It must be called
// before the message is routed: a routed Message is immutable.
func (m *Message) SetStamp(t int64) {
	m.stampHi, m.stampLo = uint16(t>>32), uint32(t)
}

// Stamp returns the receipt time SetStamp recorded, 0 for none.
func (m *Message) Stamp() int64 {
	return int64(m.stampHi)<<32 | int64(m.stampLo)
}

// Expired reports whether the message's expiry has passed at now.
func (m *Message) Expired(now time.Time) bool {
	return !m.Expiry.IsZero() && !now.Before(m.Expiry)
}

// NewMessage returns a Message with copies of topic and payload (nil for
// an empty one) and its other fields zero. When topic and payload are small
// they share one allocation with the Message: an inbound PUBLISH then costs
// the broker one allocation, whatever the number of its subscribers.
func NewMessage(topic string, payload []byte) *Message {
	n := len(topic) + len(payload)
	var m *Message
	var buf []byte
	// The Message is 96 bytes: these fill the size classes of 128, 160,
	// 192, 256, 320, 384 and 512 bytes.
	switch {
	case n <= 32:
		m, buf = withData[[32]byte](n)
	case n <= 64:
		m, buf = withData[[64]byte](n)
	case n <= 96:
		m, buf = withData[[96]byte](n)
	case n <= 160:
		m, buf = withData[[160]byte](n)
	case n <= 224:
		m, buf = withData[[224]byte](n)
	case n <= 288:
		m, buf = withData[[288]byte](n)
	case n <= 416:
		m, buf = withData[[416]byte](n)
	default:
		m, buf = new(Message), make([]byte, n)
	}
	copy(buf, topic)
	copy(buf[len(topic):], payload)
	// The topic is a string over the first bytes, which nothing writes to
	// afterwards: the payload slice starts after them.
	if len(topic) > 0 {
		m.Topic = unsafe.String(&buf[0], len(topic))
	}
	if len(payload) > 0 {
		m.Payload = buf[len(topic):n:n]
	}
	return m
}

// withData allocates a Message followed by the byte array A and returns
// the message and the first n bytes of the array (n <= len(A)).
func withData[A any](n int) (*Message, []byte) {
	b := new(struct {
		Message
		data A
	})
	return &b.Message, unsafe.Slice((*byte)(unsafe.Pointer(&b.data)), unsafe.Sizeof(b.data))[:n:n]
}

// Size is the number of bytes the message counts against a queue's byte
// limit: topic plus payload.
func (m *Message) Size() int { return len(m.Topic) + len(m.Payload) }

// Delivery is one message queued for one session, with the QoS and retain
// flag it is to be sent with.
type Delivery struct {
	Msg    *Message
	QoS    byte     // min(published QoS, granted QoS)
	Retain bool     // retain flag on the outbound PUBLISH
	SubIDs []uint32 // 5.0 subscription identifiers of the matching subscriptions
	// Share and ShareFilter name the share group and its filter when the
	// message came through a $share subscription ("" otherwise).
	Share, ShareFilter string
	// Seq numbers a delivery kept in the broker's store (0: not stored).
	Seq uint64
}

// Subscription is one topic filter a session subscribed to, with its options.
type Subscription struct {
	Filter            string // as subscribed, including a $share/group/ prefix
	QoS               byte   // granted QoS
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubID             uint32 // 5.0 subscription identifier, 0 for none
	// Deny lists topic filters whose topics the subscription does not
	// deliver (the denied filters its wildcard overlaps, decided by the
	// broker's Authorizer); nil for none. Shared, never written to; not
	// stored (decided again when the session is resumed after a restart).
	Deny []string
}
