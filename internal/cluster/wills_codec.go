package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// A will record is the value of a will's key in the wills bucket (see
// wills.go). uv = uvarint, str = uv length + bytes:
//
//	byte 0   version (willVersion)
//	8 bytes  life: the writing node's life number (wills.go), big endian;
//	         fixed size, so that the writer sets it once it is known
//	8 bytes  epoch: the writing node's claim of the session (owners
//	         bucket), big endian
//	str      the session key (broker.SessionKey)
//	byte     MQTT protocol version
//	uv       session expiry interval (seconds)
//	uv       will delay interval (seconds)
//	byte     flags: 1 holder, 2 message expiry
//	[holder] str tenant, str username, str method, str principal,
//	         uv n, n × str role, uv m, m × (str key, str value)
//	[varint] message expiry, Unix nanoseconds
//	str      origin (the publisher's session key)
//	the rest the will as a 5.0 PUBLISH packet: topic, payload, QoS, retain,
//	         properties (packet identifier 1 when QoS > 0)
const willVersion = 1

// Bounds of a will record's fields, checked by the decoder before it
// allocates.
const (
	willMaxKey   = 1 << 20 // a session key: tenant and client id
	willMaxField = 1 << 16 // a holder's string
	willMaxRoles = 1 << 12
	willMaxAttrs = 1 << 12
)

// errWillRecord reports a will record that is not one appendWill made.
var errWillRecord = errors.New("cluster: malformed will record")

// willRecord is a decoded will record.
type willRecord struct {
	life, epoch uint64
	rec         *broker.StoredSession
}

// appendWill appends the record of rec (its ClientID is the session key;
// the will, its delay, its holder, the protocol version and the expiry
// interval are kept; DisconnectedAt and the lists are not) to dst.
func appendWill(dst []byte, life, epoch uint64, rec *broker.StoredSession) ([]byte, error) {
	w := rec.Will
	if w == nil {
		return dst, errors.New("cluster: will record without a will")
	}
	dst = append(dst, willVersion)
	dst = binary.BigEndian.AppendUint64(dst, life)
	dst = binary.BigEndian.AppendUint64(dst, epoch)
	dst = appendBytes(dst, rec.ClientID)
	dst = append(dst, byte(rec.Version))
	dst = binary.AppendUvarint(dst, uint64(rec.ExpiryInterval))
	dst = binary.AppendUvarint(dst, uint64(rec.WillDelay))
	var flags byte
	if rec.Holder != nil {
		flags |= 1
	}
	if !w.Expiry.IsZero() {
		flags |= 2
	}
	dst = append(dst, flags)
	if h := rec.Holder; h != nil {
		for _, f := range []string{h.Tenant, h.Username, h.Method, h.Principal} {
			dst = appendBytes(dst, f)
		}
		dst = binary.AppendUvarint(dst, uint64(len(h.Roles)))
		for _, r := range h.Roles {
			dst = appendBytes(dst, r)
		}
		dst = binary.AppendUvarint(dst, uint64(len(h.Attrs)))
		for _, k := range slices.Sorted(maps.Keys(h.Attrs)) {
			dst = appendBytes(appendBytes(dst, k), h.Attrs[k])
		}
	}
	if !w.Expiry.IsZero() {
		dst = binary.AppendVarint(dst, w.Expiry.UnixNano())
	}
	dst = appendBytes(dst, w.Origin)
	p := packet.Publish{QoS: w.QoS, Retain: w.Retain, Topic: w.Topic, Payload: w.Payload}
	if w.QoS > 0 {
		p.PacketID = 1
	}
	if w.Properties != nil {
		p.Properties = *w.Properties
	}
	out, err := p.Append(dst, packet.V5)
	if err != nil {
		return dst, fmt.Errorf("cluster: will on %q: %w", w.Topic, err)
	}
	return out, nil
}

func appendBytes(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// willReader reads a will record; the first failure sticks.
type willReader struct {
	b  []byte
	ok bool
}

func (r *willReader) byte() byte {
	if !r.ok || len(r.b) == 0 {
		r.ok = false
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *willReader) uint64() uint64 {
	if !r.ok || len(r.b) < 8 {
		r.ok = false
		return 0
	}
	x := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return x
}

// setWillLife sets the life number of an encoded will record.
func setWillLife(b []byte, life uint64) { binary.BigEndian.PutUint64(b[1:9], life) }

func (r *willReader) uvarint(max uint64) uint64 {
	if !r.ok {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 || x > max {
		r.ok = false
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *willReader) str(max uint64) string {
	n := r.uvarint(max)
	if !r.ok || uint64(len(r.b)) < n {
		r.ok = false
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// decodeWill decodes a will record. Every length is checked against what
// is left before anything is allocated; what appendWill did not make is
// refused with errWillRecord.
func decodeWill(b []byte) (willRecord, error) {
	r := &willReader{b: b, ok: true}
	if v := r.byte(); r.ok && v != willVersion {
		return willRecord{}, fmt.Errorf("%w: version %d", errWillRecord, v)
	}
	var out willRecord
	out.life, out.epoch = r.uint64(), r.uint64()
	rec := &broker.StoredSession{ClientID: r.str(willMaxKey)}
	rec.Version = packet.Version(r.byte())
	if r.ok && rec.Version != packet.V31 && rec.Version != packet.V311 && rec.Version != packet.V5 {
		return willRecord{}, fmt.Errorf("%w: protocol version %d", errWillRecord, rec.Version)
	}
	rec.ExpiryInterval = uint32(r.uvarint(1<<32 - 1))
	rec.WillDelay = uint32(r.uvarint(1<<32 - 1))
	flags := r.byte()
	if flags > 3 {
		r.ok = false
	}
	if r.ok && flags&1 != 0 {
		h := &broker.StoredHolder{Tenant: r.str(willMaxField), Username: r.str(willMaxField),
			Method: r.str(willMaxField), Principal: r.str(willMaxField)}
		// Each role takes a byte at least, each attribute two.
		if n := r.uvarint(min(willMaxRoles, uint64(len(r.b)))); n > 0 {
			h.Roles = make([]string, n)
			for i := range h.Roles {
				h.Roles[i] = r.str(willMaxField)
			}
		}
		if m := r.uvarint(min(willMaxAttrs, uint64(len(r.b)/2))); m > 0 {
			h.Attrs = make(map[string]string, m)
			for range m {
				k := r.str(willMaxField)
				h.Attrs[k] = r.str(willMaxField)
			}
		}
		rec.Holder = h
	}
	w := &broker.StoredMessage{}
	if r.ok && flags&2 != 0 {
		x, n := binary.Varint(r.b)
		if n <= 0 {
			r.ok = false
		} else {
			r.b = r.b[n:]
			w.Expiry = time.Unix(0, x)
		}
	}
	w.Origin = r.str(willMaxKey)
	if !r.ok {
		return willRecord{}, fmt.Errorf("%w: truncated", errWillRecord)
	}
	h, rem, n, err := packet.ParseFixedHeader(r.b, 0)
	if err != nil || packet.Type(h>>4) != packet.PUBLISH || n+rem != len(r.b) {
		return willRecord{}, fmt.Errorf("%w: the will is not one PUBLISH", errWillRecord)
	}
	pk, err := packet.Decode(h, r.b[n:], packet.V5)
	if err != nil {
		return willRecord{}, fmt.Errorf("%w: %w", errWillRecord, err)
	}
	p := pk.(*packet.Publish)
	w.Topic, w.Payload, w.QoS, w.Retain = p.Topic, p.Payload, p.QoS, p.Retain
	if !p.Properties.IsZero() {
		props := p.Properties
		w.Properties = &props
	}
	rec.Will = w
	out.rec = rec
	return out, nil
}
