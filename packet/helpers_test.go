package packet

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// hx decodes a readable byte listing: hex digit pairs, whitespace and '|'
// ignored, 'quoted' text taken as raw bytes, (comments) skipped. It panics on bad input (tables only).
func hx(s string) []byte {
	var out []byte
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\n' || c == '\t' || c == '|':
			i++
		case c == '(':
			j := strings.IndexByte(s[i:], ')')
			if j < 0 {
				panic("hx: unterminated comment in " + s)
			}
			i += j + 1
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				panic("hx: unterminated quote in " + s)
			}
			out = append(out, s[i+1:i+1+j]...)
			i += j + 2
		default:
			if i+2 > len(s) {
				panic("hx: odd hex digit in " + s)
			}
			b, err := hex.DecodeString(s[i : i+2])
			if err != nil {
				panic(fmt.Sprintf("hx: %v in %q", err, s))
			}
			out = append(out, b...)
			i += 2
		}
	}
	return out
}

// pk builds a packet from its first byte and its body listing (see hx),
// computing the remaining length.
func pk(header byte, body string) []byte {
	b := hx(body)
	return append(appendVarInt([]byte{header}, len(b)), b...)
}

// P builds Properties from id/value pairs; values are int for the integer
// types (or uint32 for the 4-byte ones), string, []byte, or UserProperty.
func P(kv ...any) Properties {
	var p Properties
	for i := 0; i < len(kv); i += 2 {
		id := kv[i].(PropertyID)
		switch propTypes[id] {
		case ptByte:
			*p.byteField(id) = byte(kv[i+1].(int))
		case ptUint16:
			*p.uint16Field(id) = uint16(kv[i+1].(int))
		case ptUint32:
			if u, ok := kv[i+1].(uint32); ok { // above int's range on 32-bit
				*p.uint32Field(id) = u
			} else {
				*p.uint32Field(id) = uint32(kv[i+1].(int))
			}
		case ptString:
			*p.stringField(id) = kv[i+1].(string)
		case ptBinary:
			*p.binaryField(id) = kv[i+1].([]byte)
		case ptVarInt:
			p.SubscriptionIdentifiers = append(p.SubscriptionIdentifiers, uint32(kv[i+1].(int)))
			continue
		case ptPair:
			p.UserProperties = append(p.UserProperties, kv[i+1].(UserProperty))
			continue
		}
		p.Set(id)
	}
	return p
}

// splitPacket splits a whole packet into its first byte and body; for a
// packet whose fixed header does not parse it returns raw[0] and raw[1:].
func splitPacket(raw []byte) (byte, []byte) {
	if len(raw) == 0 {
		return 0, nil
	}
	h, rem, n, err := ParseFixedHeader(raw, 0)
	if err != nil || n+rem > len(raw) {
		return raw[0], raw[1:]
	}
	return h, raw[n : n+rem]
}

// chunkReader returns its data in chunks whose sizes come from sizes
// (cycled; 0 means 1).
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(r.sizes) > 0 {
		n = int(r.sizes[r.i%len(r.sizes)])%17 + 1
		r.i++
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}
