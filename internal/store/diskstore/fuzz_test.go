package diskstore

import (
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// FuzzDecode feeds arbitrary values and keys to every record decoder and
// to formatKey: none may panic, and a value that decodes as a delivery
// encodes back to the same delivery.
func FuzzDecode(f *testing.F) {
	props := &packet.Properties{ContentType: "c", UserProperties: []packet.UserProperty{{Key: "k", Value: "v"}}}
	props.Set(packet.PropContentType)
	d := broker.StoredDelivery{Seq: 1, QoS: 2, SubIDs: []uint32{3}, Share: "g", ShareFilter: "a/+", PacketID: 9, State: broker.AwaitPubrec,
		Msg: broker.StoredMessage{Topic: "a/b", Payload: []byte("p"), QoS: 2, Retain: true, Properties: props, Origin: "o"}}
	v, err := encodeDelivery(nil, &d)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(v, queueKey(nil, 1, 1))
	sv, err := encodeSession(nil, 4, &broker.StoredSession{Version: packet.V5, ExpiryInterval: 9, WillDelay: 5, Will: &d.Msg})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sv, sessionKey(nil, "c"))
	hv, err := encodeSession(nil, 4, &broker.StoredSession{Version: packet.V5, WillDelay: 5, Will: &d.Msg,
		Holder: &broker.StoredHolder{Tenant: "t", Username: "u", Roles: []string{"r"}, Method: "jwt", Attrs: map[string]string{"a": "b"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hv, sessionKey(nil, "c"))
	f.Add(encodeSub(nil, &broker.StoredSubscription{Filter: "x", QoS: 1, NoLocal: true}), subKey(nil, 2, "x"))
	f.Add(encodeInflight(nil, 5, broker.AwaitPubcomp), outKey(nil, 1, 2))
	f.Add([]byte{formatV1}, inKey(nil, 1, 2))
	f.Fuzz(func(t *testing.T, v, key []byte) {
		_ = formatKey(key)
		_, _, _ = decodeSession(v)
		_, _ = decodeSub(v, "f")
		_, _, _ = decodeInflight(v)
		_ = decodeEmpty(v)
		_, _ = decodeRetained(v)
		_, _ = decodeMeta(v)
		got, err := decodeDelivery(v, 1, &interner{})
		if err != nil {
			return
		}
		again, err := encodeDelivery(nil, &got)
		if err != nil {
			t.Fatalf("re-encode of a decoded delivery: %v", err)
		}
		back, err := decodeDelivery(again, 1, nil)
		if err != nil {
			t.Fatalf("decode of a re-encoded delivery: %v", err)
		}
		if back.Msg.Topic != got.Msg.Topic || string(back.Msg.Payload) != string(got.Msg.Payload) || back.State != got.State ||
			back.PacketID != got.PacketID || len(back.SubIDs) != len(got.SubIDs) || back.Msg.Origin != got.Msg.Origin {
			t.Fatalf("round trip changed the delivery:\n%+v\n%+v", got, back)
		}
	})
}
