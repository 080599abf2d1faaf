package broker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestSweepRemovesExpiredMessagesAlsoFromTheStore: messages queued for an
// offline session and retained messages whose 5.0 expiry passed are
// removed by the sweeper, in memory and on the store [MQTT-3.3.2-5].
func TestSweepRemovesExpiredMessagesAlsoFromTheStore(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	st := memstore.New()
	b, addr := mqtttest.StartBroker(t, broker.Options{Store: st, Now: clock, SweepInterval: 20 * time.Millisecond})

	sub, _ := mqtttest.Connect(t, addr, packet.V311, "sleeper", false)
	sub.Subscribe(1, packet.Subscription{Filter: "e/#", QoS: 1})
	sub.Send(&packet.Disconnect{})
	sub.ExpectClosed()

	pub, _ := mqtttest.Connect(t, addr, packet.V5, "pub", true)
	for i, expiry := range []uint32{10, 0, 10} {
		p := &packet.Publish{Topic: "e/t", QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte('a' + i)}, Retain: i == 2}
		if expiry > 0 {
			p.Properties.MessageExpiryInterval = expiry
			p.Properties.Set(packet.PropMessageExpiryInterval)
		}
		pub.Send(p)
		pub.Expect()
	}
	if cs, _ := b.ClientStats("sleeper"); cs.Queued != 3 {
		t.Fatalf("queued %d, want 3", cs.Queued)
	}
	now.Add(int64(11 * time.Second))
	mqtttest.Eventually(t, 5*time.Second, func() bool {
		cs, _ := b.ClientStats("sleeper")
		return cs.Queued == 1 && b.Stats().Retained == 0
	}, "the sweeper to remove the two expired messages and the expired retained one")
	state, err := broker.LoadAll(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if len(state.Retained) != 0 || len(state.Sessions) != 1 || len(state.Sessions[0].Queue) != 1 || string(state.Sessions[0].Queue[0].Msg.Payload) != "b" {
		t.Fatalf("store after the sweep: %d retained, sessions %+v", len(state.Retained), state.Sessions)
	}
}
