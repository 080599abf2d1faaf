package diskstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// formatV1 is the first byte of every value written by this version. A
// record with another first byte is refused with ErrUnknownFormat, so a
// future format can be told apart from garbage.
const formatV1 = 1

// schemaVersion is stored under M/"version": the layout of the key space.
const schemaVersion = 1

// Value layouts (after the format byte; uv = uvarint, str = uv length +
// bytes, time = flag bit + varint Unix nanoseconds):
//
//	session:      uv cid, version, uv expiry, flags (1: disconnected at, 2: holder), [varint disconnected at],
//	              [holder], [uv will delay, message: the will, to the end]
//	holder:       str tenant, str username, str method, str principal, uv n, n × str role,
//	              uv m, m × (str key, str value)
//	subscription: qos, flags (1: no local, 2: retain as published), retain handling, uv sub id
//	delivery:     qos, flags (1: retain), uv packet id, state, uv n, n × uv sub id, str share, str share filter, message
//	inflight out: uv packet id, state
//	inflight in:  (nothing)
//	retained:     message
//	meta:         uv value
//	message:      flags (1: expiry), [varint expiry], str origin, a 5.0 PUBLISH packet to the end
//
// The message's PUBLISH carries topic, payload, QoS, retain and the
// properties, encoded with the packet codec (packet identifier 1 when
// QoS > 0).

// Errors of the record codec. A corrupt record's error wraps one of them
// and names the key.
var (
	// ErrCorrupt means a record could not be decoded.
	ErrCorrupt = errors.New("diskstore: corrupt record")
	// ErrTruncated means a record ends early (it also matches ErrCorrupt).
	ErrTruncated = fmt.Errorf("%w: truncated", ErrCorrupt)
	// ErrUnknownFormat means a record has a format version this build does
	// not know (it also matches ErrCorrupt).
	ErrUnknownFormat = fmt.Errorf("%w: unknown format version", ErrCorrupt)
)

func appendStr(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

func appendTime(dst []byte, flags byte, bit byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, flags)
	}
	return binary.AppendVarint(append(dst, flags|bit), t.UnixNano())
}

func encodeSession(dst []byte, cid uint64, s *broker.StoredSession) ([]byte, error) {
	dst = append(dst, formatV1)
	dst = binary.AppendUvarint(dst, cid)
	dst = append(dst, byte(s.Version))
	dst = binary.AppendUvarint(dst, uint64(s.ExpiryInterval))
	var flags byte
	if s.Holder != nil {
		flags |= 2 // a record written before holders has no bit 2 and loads as it did
	}
	dst = appendTime(dst, flags, 1, s.DisconnectedAt)
	if h := s.Holder; h != nil {
		dst = appendHolder(dst, h)
	}
	if s.Will == nil {
		return dst, nil // a record without a will ends here
	}
	dst = binary.AppendUvarint(dst, uint64(s.WillDelay))
	return appendMessage(dst, s.Will)
}

func appendHolder(dst []byte, h *broker.StoredHolder) []byte {
	for _, f := range []string{h.Tenant, h.Username, h.Method, h.Principal} {
		dst = appendStr(dst, f)
	}
	dst = binary.AppendUvarint(dst, uint64(len(h.Roles)))
	for _, r := range h.Roles {
		dst = appendStr(dst, r)
	}
	dst = binary.AppendUvarint(dst, uint64(len(h.Attrs)))
	for _, k := range slices.Sorted(maps.Keys(h.Attrs)) {
		dst = appendStr(appendStr(dst, k), h.Attrs[k])
	}
	return dst
}

func encodeSub(dst []byte, s *broker.StoredSubscription) []byte {
	var flags byte
	if s.NoLocal {
		flags |= 1
	}
	if s.RetainAsPublished {
		flags |= 2
	}
	dst = append(dst, formatV1, s.QoS, flags, s.RetainHandling)
	return binary.AppendUvarint(dst, uint64(s.SubID))
}

func encodeDelivery(dst []byte, d *broker.StoredDelivery) ([]byte, error) {
	var flags byte
	if d.Retain {
		flags |= 1
	}
	dst = append(dst, formatV1, d.QoS, flags)
	dst = binary.AppendUvarint(dst, uint64(d.PacketID))
	dst = append(dst, byte(d.State))
	dst = binary.AppendUvarint(dst, uint64(len(d.SubIDs)))
	for _, id := range d.SubIDs {
		dst = binary.AppendUvarint(dst, uint64(id))
	}
	dst = appendStr(dst, d.Share)
	dst = appendStr(dst, d.ShareFilter)
	return appendMessage(dst, &d.Msg)
}

func encodeInflight(dst []byte, pid uint16, st broker.InflightState) []byte {
	dst = append(dst, formatV1)
	dst = binary.AppendUvarint(dst, uint64(pid))
	return append(dst, byte(st))
}

func encodeRetained(dst []byte, m *broker.StoredMessage) ([]byte, error) {
	return appendMessage(append(dst, formatV1), m)
}

func encodeMeta(v uint64) []byte {
	return binary.AppendUvarint([]byte{formatV1}, v)
}

func appendMessage(dst []byte, m *broker.StoredMessage) ([]byte, error) {
	dst = appendTime(dst, 0, 1, m.Expiry)
	dst = appendStr(dst, m.Origin)
	p := packet.Publish{QoS: m.QoS, Retain: m.Retain, Topic: m.Topic, Payload: m.Payload}
	if m.QoS > 0 {
		p.PacketID = 1
	}
	if m.Properties != nil {
		p.Properties = *m.Properties
	}
	out, err := p.Append(dst, packet.V5)
	if err != nil {
		return dst, fmt.Errorf("diskstore: encode message on %q: %w", m.Topic, err)
	}
	return out, nil
}

// decoder reads a value; the first failure sticks.
type decoder struct {
	b   []byte
	err error
	in  *interner // nil: no sharing
}

// interner holds the topic and origin of the previous message, shared by
// the next one when equal: consecutive messages of a queue often have the
// same.
type interner struct{ topic, origin string }

func newDecoder(v []byte) decoder {
	d := decoder{b: v}
	switch {
	case len(v) == 0:
		d.err = ErrTruncated
	case v[0] != formatV1:
		d.err = fmt.Errorf("%w %d", ErrUnknownFormat, v[0])
	default:
		d.b = v[1:]
	}
	return d
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail(ErrTruncated)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(ErrTruncated)
		return 0
	}
	if x > max {
		d.fail(fmt.Errorf("%w: value %d out of range", ErrCorrupt, x))
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) str() string {
	n := d.uvarint(1 << 28)
	if d.err != nil {
		return ""
	}
	if uint64(len(d.b)) < n {
		d.fail(ErrTruncated)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// holder reads a will's holder.
func (d *decoder) holder() *broker.StoredHolder {
	h := &broker.StoredHolder{Tenant: d.str(), Username: d.str(), Method: d.str(), Principal: d.str()}
	if n := d.uvarint(uint64(len(d.b))); n > 0 { // each takes a byte at least
		h.Roles = make([]string, n)
		for i := range h.Roles {
			h.Roles[i] = d.str()
		}
	}
	if m := d.uvarint(uint64(len(d.b) / 2)); m > 0 {
		h.Attrs = make(map[string]string, m)
		for range m {
			k := d.str()
			h.Attrs[k] = d.str()
		}
	}
	if d.err != nil {
		return nil
	}
	return h
}

// time reads a time whose presence is flag bit of flags.
func (d *decoder) time(flags, bit byte) time.Time {
	if flags&bit == 0 || d.err != nil {
		return time.Time{}
	}
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(ErrTruncated)
		return time.Time{}
	}
	d.b = d.b[n:]
	return time.Unix(0, x)
}

// limit fails when c is above max.
func (d *decoder) limit(what string, c, max byte) byte {
	if c > max && d.err == nil {
		d.fail(fmt.Errorf("%w: %s %d", ErrCorrupt, what, c))
	}
	return c
}

// end fails if bytes are left, and returns the error.
func (d *decoder) end() error {
	if d.err == nil && len(d.b) > 0 {
		d.fail(fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b)))
	}
	return d.err
}

func decodeSession(v []byte) (cid uint64, s *broker.StoredSession, err error) {
	d := newDecoder(v)
	cid = d.uvarint(1<<64 - 1)
	s = &broker.StoredSession{}
	s.Version = packet.Version(d.byte())
	if d.err == nil && s.Version != packet.V31 && s.Version != packet.V311 && s.Version != packet.V5 {
		d.fail(fmt.Errorf("%w: protocol version %d", ErrCorrupt, s.Version))
	}
	s.ExpiryInterval = uint32(d.uvarint(1<<32 - 1))
	flags := d.limit("flags", d.byte(), 3)
	s.DisconnectedAt = d.time(flags, 1)
	if flags&2 != 0 {
		s.Holder = d.holder()
	}
	if d.err == nil && len(d.b) > 0 { // the will, when there is one
		s.WillDelay = uint32(d.uvarint(1<<32 - 1))
		s.Will = &broker.StoredMessage{}
		d.message(s.Will)
	}
	if err := d.end(); err != nil {
		return 0, nil, err
	}
	if cid == 0 {
		return 0, nil, fmt.Errorf("%w: cid 0", ErrCorrupt)
	}
	return cid, s, nil
}

func decodeSub(v []byte, filter string) (broker.StoredSubscription, error) {
	d := newDecoder(v)
	s := broker.StoredSubscription{Filter: filter}
	s.QoS = d.limit("QoS", d.byte(), 2)
	flags := d.limit("flags", d.byte(), 3)
	s.NoLocal, s.RetainAsPublished = flags&1 != 0, flags&2 != 0
	s.RetainHandling = d.limit("retain handling", d.byte(), 2)
	s.SubID = uint32(d.uvarint(1<<32 - 1))
	return s, d.end()
}

func decodeDelivery(v []byte, seq uint64, in *interner) (broker.StoredDelivery, error) {
	d := newDecoder(v)
	d.in = in
	del := broker.StoredDelivery{Seq: seq}
	del.QoS = d.limit("QoS", d.byte(), 2)
	del.Retain = d.limit("flags", d.byte(), 1) != 0
	del.PacketID = uint16(d.uvarint(0xffff))
	del.State = broker.InflightState(d.limit("state", d.byte(), byte(broker.AwaitPubcomp)))
	n := d.uvarint(uint64(len(d.b)))
	if n > 0 {
		del.SubIDs = make([]uint32, n)
		for i := range del.SubIDs {
			del.SubIDs[i] = uint32(d.uvarint(1<<32 - 1))
		}
	}
	del.Share = d.str()
	del.ShareFilter = d.str()
	d.message(&del.Msg)
	return del, d.end()
}

func decodeInflight(v []byte) (uint16, broker.InflightState, error) {
	d := newDecoder(v)
	pid := uint16(d.uvarint(0xffff))
	st := broker.InflightState(d.limit("state", d.byte(), byte(broker.AwaitPubcomp)))
	return pid, st, d.end()
}

func decodeEmpty(v []byte) error {
	d := newDecoder(v)
	return d.end()
}

func decodeRetained(v []byte) (*broker.StoredMessage, error) {
	d := newDecoder(v)
	m := &broker.StoredMessage{}
	d.message(m)
	return m, d.end()
}

func decodeMeta(v []byte) (uint64, error) {
	d := newDecoder(v)
	x := d.uvarint(1<<64 - 1)
	return x, d.end()
}

// message reads a message that extends to the end of the value. A
// PUBLISH without properties (the common case) is parsed here; one with
// properties goes through the packet codec.
func (d *decoder) message(m *broker.StoredMessage) {
	flags := d.limit("message flags", d.byte(), 1)
	m.Expiry = d.time(flags, 1)
	m.Origin = d.intern(originField, d.rawStr())
	if d.err != nil {
		return
	}
	h, rem, n, err := packet.ParseFixedHeader(d.b, 0)
	switch {
	case errors.Is(err, packet.ErrIncomplete):
		d.fail(ErrTruncated)
		return
	case err != nil:
		d.fail(fmt.Errorf("%w: %w", ErrCorrupt, err))
		return
	case packet.Type(h>>4) != packet.PUBLISH:
		d.fail(fmt.Errorf("%w: message is not a PUBLISH", ErrCorrupt))
		return
	case n+rem > len(d.b):
		d.fail(ErrTruncated)
		return
	}
	body := d.b[n : n+rem]
	d.b = d.b[n+rem:]
	m.QoS, m.Retain = h>>1&3, h&1 != 0
	if m.QoS > 2 {
		d.fail(fmt.Errorf("%w: QoS %d", ErrCorrupt, m.QoS))
		return
	}
	// Fast path: topic, packet id, property length 0, payload.
	if len(body) >= 2 {
		tl := int(binary.BigEndian.Uint16(body))
		off := 2 + tl
		if m.QoS > 0 {
			off += 2
		}
		if off < len(body) && body[off] == 0 {
			m.Topic = d.intern(topicField, body[2:2+tl])
			if p := body[off+1:]; len(p) > 0 {
				m.Payload = bytes.Clone(p)
			}
			return
		}
	}
	pk, err := packet.Decode(h, body, packet.V5)
	if err != nil {
		d.fail(fmt.Errorf("%w: %w", ErrCorrupt, err))
		return
	}
	p := pk.(*packet.Publish)
	m.Topic, m.Payload = d.intern(topicField, []byte(p.Topic)), p.Payload
	if !p.Properties.IsZero() {
		props := p.Properties
		m.Properties = &props
	}
}

// rawStr reads a length-prefixed string without copying it.
func (d *decoder) rawStr() []byte {
	n := d.uvarint(1 << 28)
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail(ErrTruncated)
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

// intern returns b as a string, reusing the previous one (field of the
// interner) when equal.
func (d *decoder) intern(field func(*interner) *string, b []byte) string {
	if d.in == nil {
		return string(b)
	}
	last := field(d.in)
	if string(b) != *last {
		*last = string(b)
	}
	return *last
}

func topicField(in *interner) *string  { return &in.topic }
func originField(in *interner) *string { return &in.origin }
