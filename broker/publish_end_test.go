package broker_test

import (
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestStoreFailureEndsAPublishOnEitherPath: a PUBLISH whose store write
// fails ends the same way whether the reader wrote it (a QoS 0 retained
// message) or the durable pipeline did (a QoS 1/2 delivery to a stored
// session, a QoS 1/2 retained message): nothing that waited for the write
// is queued or retained (a QoS 0 delivery waits for none: it is queued
// while the message is routed), a 5.0 QoS 1/2 publisher hears 0x80 in PUBACK/PUBREC
// [MQTT-3.4.2-1] [MQTT-3.5.2-1], and a publisher that cannot hear it (3.x,
// or QoS 0) loses the connection without an acknowledgement (5.0: a
// DISCONNECT 0x80 first).
func TestStoreFailureEndsAPublishOnEitherPath(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v      packet.Version
		qos    byte
		retain bool
		closes bool // else PUBACK/PUBREC 0x80
	}{
		{"durable 5.0 QoS 1", packet.V5, 1, false, false},
		{"durable 5.0 QoS 1 retained", packet.V5, 1, true, false},
		{"durable 5.0 QoS 2 retained", packet.V5, 2, true, false},
		{"durable 3.1.1 QoS 1 retained", packet.V311, 1, true, true},
		{"durable 3.1.1 QoS 2", packet.V311, 2, false, true},
		{"inline 5.0 QoS 0 retained", packet.V5, 0, true, true},
		{"inline 3.1.1 QoS 0 retained", packet.V311, 0, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &countingStore{Store: memstore.New()}
			b, addr := mqtttest.StartBroker(t, broker.Options{Store: st})
			sub, _ := mqtttest.Connect(t, addr, packet.V311, "stored-sub", false)
			sub.Subscribe(1, packet.Subscription{Filter: "f/#", QoS: 2})
			st.fail.Store(true)

			pub, _ := mqtttest.Connect(t, addr, tc.v, "pub", true)
			pub.Send(&packet.Publish{Topic: "f/x", QoS: tc.qos, Retain: tc.retain, PacketID: 1, Payload: []byte("x")})
			if !tc.closes {
				var id uint16
				var code packet.ReasonCode
				switch a := pub.Expect().(type) {
				case *packet.Puback:
					if tc.qos == 1 {
						id, code = a.PacketID, a.ReasonCode
					}
				case *packet.Pubrec:
					if tc.qos == 2 {
						id, code = a.PacketID, a.ReasonCode
					}
				}
				if id != 1 || code != packet.UnspecifiedError {
					t.Fatalf("acknowledgement of packet %d with %v; want packet 1, 0x80 [MQTT-3.4.2-1] [MQTT-3.5.2-1]", id, code)
				}
			} else {
				got := pub.ExpectClosed()
				for _, p := range got {
					d, ok := p.(*packet.Disconnect)
					if !ok || tc.v != packet.V5 || d.ReasonCode != packet.UnspecifiedError {
						t.Fatalf("got %#v before the close; want nothing but a 5.0 DISCONNECT 0x80", got)
					}
				}
			}
			mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().StoreErrors > 0 }, "the failed write counted")

			// Nothing that waited for the write was queued, nothing retained.
			if tc.qos == 0 {
				if p := sub.ExpectPublish(); p.Topic != "f/x" || p.QoS != 0 {
					t.Fatalf("got %+v, want the QoS 0 delivery routed before the write", p)
				}
			}
			sub.ExpectNone(200 * time.Millisecond)
			late, _ := mqtttest.Connect(t, addr, packet.V5, "late", true)
			late.Subscribe(1, packet.Subscription{Filter: "f/#", QoS: 1})
			late.ExpectNone(200 * time.Millisecond)
		})
	}
}
