package broker

import (
	"bytes"
	"testing"

	"github.com/petrel-mqtt/petrel/packet"
)

// ackOf returns the type and packet id of a decoded PUBACK, PUBREC,
// PUBREL or PUBCOMP, and whether p is one that succeeds without
// properties.
func ackOf(p packet.Packet) (t packet.Type, id uint16, plain bool) {
	switch p := p.(type) {
	case *packet.Puback:
		return packet.PUBACK, p.PacketID, p.ReasonCode == packet.Success && p.Properties.IsZero()
	case *packet.Pubrec:
		return packet.PUBREC, p.PacketID, p.ReasonCode == packet.Success && p.Properties.IsZero()
	case *packet.Pubrel:
		return packet.PUBREL, p.PacketID, p.ReasonCode == packet.Success && p.Properties.IsZero()
	case *packet.Pubcomp:
		return packet.PUBCOMP, p.PacketID, p.ReasonCode == packet.Success && p.Properties.IsZero()
	}
	return 0, 0, false
}

// FuzzReadAck: the reader's 4-byte acknowledgement decoder agrees with
// packet.Decode, for every version: what it takes, Decode decodes to the
// same type and packet id with Success and no properties, and the ack
// encodes back to the same bytes; what Decode refuses (flags
// [MQTT-3.6.1-1] [MQTT-2.2.2-2], packet id 0 [MQTT-2.3.1-1]) it leaves
// to Decode.
func FuzzReadAck(f *testing.F) {
	for _, seed := range [][]byte{{0x40, 0, 1}, {0x50, 1, 0}, {0x62, 0xff, 0xff}, {0x60, 0, 1}, {0x70, 0, 0}, {0x72, 0, 9}, {0x30, 0, 1}, {0x40, 0, 1, 0}} {
		f.Add(seed[0], seed[1:])
	}
	f.Fuzz(func(t *testing.T, hdr byte, body []byte) {
		c := &conn{}
		for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
			got := c.readAck(hdr, body)
			want, err := packet.Decode(hdr, body, v)
			if got == nil {
				if err == nil {
					if _, _, plain := ackOf(want); plain && len(body) == 2 {
						t.Fatalf("%v: % x left to Decode, which decodes a plain %v", v, append([]byte{hdr}, body...), want.Type())
					}
				}
				continue
			}
			if err != nil {
				t.Fatalf("%v: % x decoded as %v, Decode refuses it: %v", v, append([]byte{hdr}, body...), got.Type(), err)
			}
			a := *got.(*ack)
			wt, wid, plain := ackOf(want)
			if !plain || wt != a.Type() || wid != a.id() {
				t.Fatalf("%v: % x: ack %v id %d, Decode %+v", v, append([]byte{hdr}, body...), a.Type(), a.id(), want)
			}
			enc, _ := a.Append(nil, v)
			if !bytes.Equal(enc, append([]byte{hdr, 2}, body...)) {
				t.Fatalf("%v: re-encoded % x, read % x", v, enc, append([]byte{hdr, 2}, body...))
			}
			ref, _ := want.Append(nil, v)
			if !bytes.Equal(enc, ref) {
				t.Fatalf("%v: encoded % x, the packet package % x", v, enc, ref)
			}
		}
	})
}

// TestAckPacket: a success acknowledgement is the 4-byte ack, anything
// else the full packet with its reason code.
func TestAckPacket(t *testing.T) {
	for _, tt := range []packet.Type{packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP} {
		if _, ok := ackPacket(tt, 7, packet.Success).(ack); !ok {
			t.Errorf("%v success: not an ack", tt)
		}
		p := ackPacket(tt, 7, packet.PacketIdentifierNotFound)
		if _, ok := p.(ack); ok || p.Type() != tt {
			t.Errorf("%v 0x92: %T %v", tt, p, p.Type())
		}
		if _, id, _ := ackOf(p); id != 7 {
			t.Errorf("%v 0x92: packet id %d", tt, id)
		}
	}
}
