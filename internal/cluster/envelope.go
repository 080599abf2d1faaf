package cluster

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// The envelope is the body of every message this package puts on NATS (live
// messages and retained ones): a small binary header, then the payload.
// The topic travels in the subject.
//
//	byte 0       version (envVersion)
//	byte 1       flags: bits 0-1 QoS, bit 2 retain, bit 3 expiry, bit 4 properties
//	bytes 2-9    origin incarnation (uint64, big endian): the sending Node's start
//	bytes 10-17  sequence number (uint64, big endian) per incarnation, live messages only
//	uvarint n, n bytes: origin node name
//	uvarint n, n bytes: origin session (session.Message.Origin)
//	[expiry]     uvarint: remaining seconds of the 5.0 message expiry, rounded up
//	[properties] byte mask (1 payload format, 2 content type, 4 response topic,
//	             8 correlation data, 16 user properties), then those present:
//	             byte; uvarint-prefixed strings and bytes; uvarint count and
//	             count pairs of uvarint-prefixed strings
//	the rest     payload
const envVersion = 1

const (
	flagRetain = 1 << 2
	flagExpiry = 1 << 3
	flagProps  = 1 << 4

	propFormat      = 1
	propContentType = 2
	propResponse    = 4
	propCorrelation = 8
	propUser        = 16

	envFixed  = 18 // version, flags, incarnation, sequence
	seqOffset = 10
)

// errEnvelope reports an envelope that is not one appendEnvelope made.
var errEnvelope = errors.New("cluster: malformed message envelope")

// envelope is a decoded envelope.
type envelope struct {
	incarnation uint64
	seq         uint64
	node        string
	msg         *session.Message
}

// appendEnvelope appends msg's envelope (sequence 0) and payload to dst.
// An expired message gets a remaining expiry of 0 seconds; the caller
// drops those before.
func appendEnvelope(dst []byte, msg *session.Message, node string, incarnation uint64, now time.Time) []byte {
	flags := msg.QoS & 3
	if msg.Retain {
		flags |= flagRetain
	}
	if !msg.Expiry.IsZero() {
		flags |= flagExpiry
	}
	p := msg.Properties
	var mask byte
	if p != nil {
		if p.Has(packet.PropPayloadFormatIndicator) {
			mask |= propFormat
		}
		if p.Has(packet.PropContentType) {
			mask |= propContentType
		}
		if p.Has(packet.PropResponseTopic) {
			mask |= propResponse
		}
		if p.Has(packet.PropCorrelationData) {
			mask |= propCorrelation
		}
		if len(p.UserProperties) > 0 {
			mask |= propUser
		}
	}
	if mask != 0 {
		flags |= flagProps
	}
	dst = append(dst, envVersion, flags)
	dst = binary.BigEndian.AppendUint64(dst, incarnation)
	dst = binary.BigEndian.AppendUint64(dst, 0)
	dst = appendString(dst, node)
	dst = appendString(dst, msg.Origin)
	if flags&flagExpiry != 0 {
		left := max(msg.Expiry.Sub(now), 0)
		dst = binary.AppendUvarint(dst, uint64((left+time.Second-1)/time.Second))
	}
	if mask != 0 {
		dst = append(dst, mask)
		if mask&propFormat != 0 {
			dst = append(dst, p.PayloadFormatIndicator)
		}
		if mask&propContentType != 0 {
			dst = appendString(dst, p.ContentType)
		}
		if mask&propResponse != 0 {
			dst = appendString(dst, p.ResponseTopic)
		}
		if mask&propCorrelation != 0 {
			dst = appendString(dst, string(p.CorrelationData))
		}
		if mask&propUser != 0 {
			dst = binary.AppendUvarint(dst, uint64(len(p.UserProperties)))
			for _, u := range p.UserProperties {
				dst = appendString(dst, u.Key)
				dst = appendString(dst, u.Value)
			}
		}
	}
	return append(dst, msg.Payload...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// setSeq writes the sequence number into an envelope appendEnvelope made.
func setSeq(env []byte, seq uint64) {
	binary.BigEndian.PutUint64(env[seqOffset:], seq)
}

// envReader reads an envelope; every length is checked against what is
// left, so a hostile body costs at most its own size.
type envReader struct {
	b   []byte
	err bool
}

func (r *envReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *envReader) bytes() []byte {
	n := r.uvarint()
	if r.err || n > uint64(len(r.b)) {
		r.err = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *envReader) byte() byte {
	if len(r.b) == 0 {
		r.err = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// decodeEnvelope decodes the envelope of a message on topic. The returned
// message owns copies of everything it holds (data is not kept).
func decodeEnvelope(topic string, data []byte, now time.Time) (envelope, error) {
	if len(data) < envFixed || data[0] != envVersion {
		return envelope{}, errEnvelope
	}
	flags := data[1]
	if flags&^(3|flagRetain|flagExpiry|flagProps) != 0 || flags&3 == 3 {
		return envelope{}, errEnvelope
	}
	e := envelope{
		incarnation: binary.BigEndian.Uint64(data[2:]),
		seq:         binary.BigEndian.Uint64(data[seqOffset:]),
	}
	r := envReader{b: data[envFixed:]}
	node := r.bytes()
	if len(node) == 0 || len(node) > maxNodeLen {
		// The receiver keeps a dedup window per origin node: a forged name
		// must not make it keep megabytes per window.
		return envelope{}, errEnvelope
	}
	e.node = string(node)
	origin := string(r.bytes())
	var expiry time.Time
	if flags&flagExpiry != 0 {
		secs := r.uvarint()
		if secs > 1<<32-1 {
			return envelope{}, errEnvelope // an MQTT expiry is a 32-bit count of seconds
		}
		expiry = now.Add(time.Duration(secs) * time.Second)
	}
	var props *packet.Properties
	if flags&flagProps != 0 {
		props = new(packet.Properties)
		mask := r.byte()
		if mask == 0 || mask&^(propFormat|propContentType|propResponse|propCorrelation|propUser) != 0 {
			return envelope{}, errEnvelope
		}
		if mask&propFormat != 0 {
			props.PayloadFormatIndicator = r.byte()
			props.Set(packet.PropPayloadFormatIndicator)
		}
		if mask&propContentType != 0 {
			props.ContentType = string(r.bytes())
			props.Set(packet.PropContentType)
		}
		if mask&propResponse != 0 {
			props.ResponseTopic = string(r.bytes())
			props.Set(packet.PropResponseTopic)
		}
		if mask&propCorrelation != 0 {
			props.CorrelationData = append([]byte(nil), r.bytes()...)
			props.Set(packet.PropCorrelationData)
		}
		if mask&propUser != 0 {
			n := r.uvarint()
			// Each pair takes at least two bytes: a count beyond that is a lie.
			if r.err || n == 0 || n > uint64(len(r.b))/2 {
				return envelope{}, errEnvelope
			}
			props.UserProperties = make([]packet.UserProperty, 0, n)
			for range n {
				k := string(r.bytes())
				v := string(r.bytes())
				props.UserProperties = append(props.UserProperties, packet.UserProperty{Key: k, Value: v})
			}
		}
	}
	if r.err {
		return envelope{}, errEnvelope
	}
	msg := session.NewMessage(topic, r.b)
	msg.QoS = flags & 3
	msg.Retain = flags&flagRetain != 0
	msg.Origin = origin
	msg.Expiry = expiry
	msg.Properties = props
	e.msg = msg
	return e, nil
}
