package broker_test

import (
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestSmokeRetained(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "pub", true)
	pub.Send(&packet.Publish{Topic: "r/1", QoS: 1, PacketID: 7, Retain: true, Payload: []byte("x")})
	if a, ok := pub.Expect().(*packet.Puback); !ok || a.PacketID != 7 {
		t.Fatalf("want PUBACK 7")
	}
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "sub", true)
	sub.Subscribe(1, packet.Subscription{Filter: "r/#", QoS: 1})
	p := sub.ExpectPublish()
	t.Logf("%+v", p)
}
