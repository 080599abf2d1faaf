package packet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"
)

// ErrIncomplete reports that b does not yet hold a complete fixed header.
var ErrIncomplete = errors.New("packet: incomplete fixed header")

// Preallocated so that ParseFixedHeader allocates nothing, even on error.
var (
	errVarIntTooLong = fmt.Errorf("%w: remaining length: variable byte integer longer than 4 bytes", ErrMalformedPacket)
	errTooLarge      = fmt.Errorf("%w: packet exceeds the maximum packet size", ErrPacketTooLarge)
)

// ParseFixedHeader parses the fixed header at the start of b: the first byte
// and the remaining length (a variable byte integer). n is the length of the
// fixed header (2..5). maxSize bounds the whole packet size (n + remaining);
// 0 means no bound beyond MaxRemainingLength. It returns ErrIncomplete when b
// is too short to hold the fixed header, an error wrapping ErrMalformedPacket
// when the remaining length has more than 4 bytes, and one wrapping
// ErrPacketTooLarge (with header, remaining and n set) when the packet
// exceeds maxSize. Non-minimal encodings are accepted. It allocates nothing.
func ParseFixedHeader(b []byte, maxSize int) (header byte, remaining int, n int, err error) {
	if len(b) < 2 {
		return 0, 0, 0, ErrIncomplete
	}
	shift := 0
	for i := 1; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, 0, ErrIncomplete
		}
		c := b[i]
		remaining |= int(c&0x7f) << shift
		if c&0x80 == 0 {
			n = i + 1
			if maxSize > 0 && n+remaining > maxSize {
				return b[0], remaining, n, errTooLarge // 5.0 [MQTT-3.1.2-24] (server), [MQTT-3.2.2-15] (client)
			}
			return b[0], remaining, n, nil
		}
		shift += 7
	}
	return 0, 0, 0, errVarIntTooLong // 3.1.1 §2.2.3, 5.0 §1.5.5: at most 4 bytes
}

// ReadPacket reads one whole packet from r for protocol version v, checking
// the size bound maxSize (as in ParseFixedHeader) before allocating the body.
// I/O errors are returned as is: io.EOF when r ends before the first byte,
// io.ErrUnexpectedEOF when it ends inside a packet. The broker itself uses
// ParseFixedHeader and Decode on pooled buffers.
func ReadPacket(r io.Reader, v Version, maxSize int) (Packet, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return nil, err
	}
	n := 1
	for n < 5 {
		if _, err := io.ReadFull(r, hdr[n:n+1]); err != nil {
			return nil, unexpected(err)
		}
		n++
		if hdr[n-1]&0x80 == 0 {
			break
		}
	}
	header, remaining, _, err := ParseFixedHeader(hdr[:n], maxSize)
	if err != nil {
		return nil, err
	}
	body := make([]byte, remaining)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, unexpected(err)
	}
	return Decode(header, body, v)
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (v Version) valid() bool { return v == V31 || v == V311 || v == V5 }

// Decode decodes one packet from its first byte header and its body (the
// remaining-length bytes that follow the fixed header). v is the
// connection's protocol version; it is ignored for CONNECT, which carries its
// own. The packet does not alias body: strings are copied and byte slices
// (such as Publish.Payload) are copied exactly once, so body may be reused.
// Every error wraps ErrMalformedPacket, ErrProtocolError,
// ErrUnsupportedVersion or ErrPacketTooLarge.
func Decode(header byte, body []byte, v Version) (Packet, error) {
	t := Type(header >> 4)
	flags := header & 0x0f
	if t != CONNECT && !v.valid() {
		return nil, fmt.Errorf("%w: %v: unknown protocol version %d", ErrUnsupportedVersion, t, byte(v))
	}
	switch t {
	case 0:
		return nil, fmt.Errorf("%w: reserved packet type 0", ErrMalformedPacket) // 3.1.1 §2.2.1, 5.0 §2.1.2
	case PUBLISH:
		return ret(decodePublish(flags, body, v))
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		if flags != 0x2 {
			return nil, fmt.Errorf("%w: %v: fixed header flags 0x%X, must be 0x2 [MQTT-3.6.1-1][MQTT-3.8.1-1][MQTT-3.10.1-1]", ErrMalformedPacket, t, flags) // [MQTT-3.6.1-1][MQTT-3.8.1-1][MQTT-3.10.1-1]
		}
	case AUTH:
		if v != V5 {
			return nil, fmt.Errorf("%w: reserved packet type 15 in %v", ErrMalformedPacket, v) // 3.1.1 §2.2.1: 15 is reserved
		}
		fallthrough
	default:
		if flags != 0 {
			return nil, fmt.Errorf("%w: %v: fixed header flags 0x%X, must be 0 [MQTT-2.2.2-2]", ErrMalformedPacket, t, flags) // [MQTT-2.2.2-2]
		}
	}
	switch t {
	case CONNECT:
		return ret(decodeConnect(body))
	case CONNACK:
		return ret(decodeConnack(body, v))
	case PUBACK:
		id, rc, props, err := decodeAck(body, v, "puback", pubackCodes)
		if err != nil {
			return nil, err
		}
		return &Puback{PacketID: id, ReasonCode: rc, Properties: props}, nil
	case PUBREC:
		id, rc, props, err := decodeAck(body, v, "pubrec", pubackCodes)
		if err != nil {
			return nil, err
		}
		return &Pubrec{PacketID: id, ReasonCode: rc, Properties: props}, nil
	case PUBREL:
		id, rc, props, err := decodeAck(body, v, "pubrel", pubrelCodes)
		if err != nil {
			return nil, err
		}
		return &Pubrel{PacketID: id, ReasonCode: rc, Properties: props}, nil
	case PUBCOMP:
		id, rc, props, err := decodeAck(body, v, "pubcomp", pubrelCodes)
		if err != nil {
			return nil, err
		}
		return &Pubcomp{PacketID: id, ReasonCode: rc, Properties: props}, nil
	case SUBSCRIBE:
		return ret(decodeSubscribe(body, v))
	case SUBACK:
		return ret(decodeSuback(body, v))
	case UNSUBSCRIBE:
		return ret(decodeUnsubscribe(body, v))
	case UNSUBACK:
		return ret(decodeUnsuback(body, v))
	case PINGREQ:
		if err := checkEmpty(body, "pingreq"); err != nil {
			return nil, err
		}
		return &Pingreq{}, nil
	case PINGRESP:
		if err := checkEmpty(body, "pingresp"); err != nil {
			return nil, err
		}
		return &Pingresp{}, nil
	case DISCONNECT:
		return ret(decodeDisconnect(body, v))
	default: // AUTH, v == V5
		return ret(decodeAuth(body))
	}
}

// ret converts a decoder's result to Packet without making a non-nil
// interface from a nil pointer.
func ret[P Packet](p P, err error) (Packet, error) {
	if err != nil {
		return nil, err
	}
	return p, nil
}

// decoder reads the fields of one packet body. pkt names the packet in
// error messages.
type decoder struct {
	b   []byte
	pkt string
}

func (d *decoder) errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", sentinel, d.pkt, fmt.Sprintf(format, args...))
}

func (d *decoder) truncated(field string) error {
	return d.errorf(ErrMalformedPacket, "%s: truncated", field)
}

func (d *decoder) readByte(field string) (byte, error) {
	if len(d.b) < 1 {
		return 0, d.truncated(field)
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c, nil
}

func (d *decoder) readUint16(field string) (uint16, error) {
	if len(d.b) < 2 {
		return 0, d.truncated(field)
	}
	x := uint16(d.b[0])<<8 | uint16(d.b[1])
	d.b = d.b[2:]
	return x, nil
}

func (d *decoder) readUint32(field string) (uint32, error) {
	if len(d.b) < 4 {
		return 0, d.truncated(field)
	}
	x := uint32(d.b[0])<<24 | uint32(d.b[1])<<16 | uint32(d.b[2])<<8 | uint32(d.b[3])
	d.b = d.b[4:]
	return x, nil
}

// readVarInt reads a variable byte integer (at most 4 bytes).
func (d *decoder) readVarInt(field string) (int, error) {
	x, shift := 0, 0
	for i := 0; i < 4; i++ {
		if i >= len(d.b) {
			return 0, d.truncated(field)
		}
		c := d.b[i]
		x |= int(c&0x7f) << shift
		if c&0x80 == 0 {
			d.b = d.b[i+1:]
			return x, nil
		}
		shift += 7
	}
	return 0, d.errorf(ErrMalformedPacket, "%s: variable byte integer longer than 4 bytes", field) // 5.0 §1.5.5
}

// readBinaryAlias reads length-prefixed bytes, aliasing the body.
func (d *decoder) readBinaryAlias(field string) ([]byte, error) {
	if len(d.b) < 2 {
		return nil, d.truncated(field)
	}
	n := int(d.b[0])<<8 | int(d.b[1])
	if len(d.b)-2 < n {
		return nil, d.truncated(field)
	}
	s := d.b[2 : 2+n]
	d.b = d.b[2+n:]
	return s, nil
}

// readBinary reads length-prefixed binary data and copies it (nil if empty).
func (d *decoder) readBinary(field string) ([]byte, error) {
	s, err := d.readBinaryAlias(field)
	if err != nil || len(s) == 0 {
		return nil, err
	}
	return bytes.Clone(s), nil
}

// readStringAlias reads a UTF-8 encoded string, aliasing the body.
func (d *decoder) readStringAlias(field string) ([]byte, error) {
	s, err := d.readBinaryAlias(field)
	if err != nil {
		return nil, err
	}
	for _, b := range s {
		if b == 0 || b >= utf8.RuneSelf {
			return d.checkString(field, s)
		}
	}
	return s, nil // ASCII without U+0000: valid, in one pass
}

// checkString applies readStringAlias's checks to a string that is not
// plain ASCII or holds a NUL.
func (d *decoder) checkString(field string, s []byte) ([]byte, error) {
	if !utf8.Valid(s) {
		return nil, d.errorf(ErrMalformedPacket, "%s: invalid UTF-8 [MQTT-1.5.3-1]", field) // [MQTT-1.5.3-1] (surrogates included)
	}
	if bytes.IndexByte(s, 0) >= 0 {
		return nil, d.errorf(ErrMalformedPacket, "%s: contains U+0000 [MQTT-1.5.3-2]", field) // [MQTT-1.5.3-2]
	}
	return s, nil
}

// readString reads a UTF-8 encoded string and copies it.
func (d *decoder) readString(field string) (string, error) {
	s, err := d.readStringAlias(field)
	return string(s), err
}

// end rejects bytes left after the packet's last field.
func (d *decoder) end() error {
	if len(d.b) != 0 {
		return d.errorf(ErrMalformedPacket, "%d unexpected trailing bytes", len(d.b))
	}
	return nil
}

// readPacketID reads a packet identifier, which must be non-zero.
func (d *decoder) readPacketID() (uint16, error) {
	id, err := d.readUint16("packet identifier")
	if err != nil {
		return 0, err
	}
	if id == 0 {
		return 0, d.errorf(ErrProtocolError, "packet identifier 0 [MQTT-2.3.1-1]") // [MQTT-2.3.1-1]
	}
	return id, nil
}

func checkEmpty(body []byte, pkt string) error {
	if len(body) != 0 {
		return fmt.Errorf("%w: %s: remaining length %d, must be 0", ErrMalformedPacket, pkt, len(body)) // 3.1.1 §3.12.1, §3.13.1, §3.14.1
	}
	return nil
}

// codeSet is a set of reason codes.
type codeSet [4]uint64

func newCodeSet(codes ...ReasonCode) (s codeSet) {
	for _, c := range codes {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

func (s *codeSet) has(c ReasonCode) bool { return s[c>>6]&(1<<(c&63)) != 0 }

// Encoding primitives.

func varIntLen(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	}
	return 4
}

func appendVarInt(dst []byte, n int) []byte {
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

func appendUint16(dst []byte, x uint16) []byte { return append(dst, byte(x>>8), byte(x)) }

func appendUint32(dst []byte, x uint32) []byte {
	return append(dst, byte(x>>24), byte(x>>16), byte(x>>8), byte(x))
}

// appendString appends a length-prefixed string; the caller has checked
// that len(s) <= 65535.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	dst = append(dst, byte(len(b)>>8), byte(len(b)))
	return append(dst, b...)
}

// appendHeader grows dst for the whole packet and appends its fixed header.
func appendHeader(dst []byte, header byte, remaining int) []byte {
	dst = slices.Grow(dst, 1+varIntLen(remaining)+remaining)
	return appendVarInt(append(dst, header), remaining)
}

// sizer adds up an encoded size and records the first field too long to
// encode.
type sizer struct {
	n   int
	err error
}

func (s *sizer) str(field string, l int) {
	if l > 0xffff && s.err == nil {
		s.err = fmt.Errorf("packet: %s is %d bytes, longer than 65535", field, l)
	}
	s.n += 2 + l
}

func (s *sizer) props(p *Properties, v Version) int {
	if v != V5 {
		return 0
	}
	n, err := p.size()
	if err != nil && s.err == nil {
		s.err = err
	}
	s.n += varIntLen(n) + n
	return n
}

func (s *sizer) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// check validates the version and the remaining length of an encoding.
func (s *sizer) check(t Type, v Version) error {
	if !v.valid() {
		return fmt.Errorf("packet: %v: cannot encode for unknown protocol version %d", t, byte(v))
	}
	if s.err != nil {
		return fmt.Errorf("packet: %v: %w", t, s.err)
	}
	if s.n > MaxRemainingLength {
		return fmt.Errorf("packet: %v: remaining length %d exceeds %d", t, s.n, MaxRemainingLength)
	}
	return nil
}

var errPacketIDZero = errors.New("packet identifier 0")

// readFilter reads a topic filter of SUBSCRIBE or UNSUBSCRIBE: a non-empty
// UTF-8 string [MQTT-4.7.3-1] (wildcards are the broker's to check).
func (d *decoder) readFilter() (string, error) {
	f, err := d.readString("topic filter")
	if err != nil {
		return "", err
	}
	if f == "" {
		return "", d.errorf(ErrMalformedPacket, "empty topic filter [MQTT-4.7.3-1]") // [MQTT-4.7.3-1]
	}
	return f, nil
}
