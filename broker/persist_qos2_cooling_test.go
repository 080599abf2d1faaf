package broker_test

import (
	"time"

	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestNextDeliveryWaitingForACoolingIDFlushesItsRemoval: two stored QoS 2
// deliveries 32767 Seqs apart share a packet id (session.PacketIDFor).
// The second is sent only after the first's PUBCOMP and once the first's
// removal is on disk; with no other commit to carry that removal, the
// writer, finding the next delivery waiting for the id, has it committed
// at once instead of leaving the queue stalled [MQTT-4.3.3-2].
func TestNextDeliveryWaitingForACoolingIDFlushesItsRemoval(t *testing.T) {
	const id = "cool-head"
	first, second := uint64(1), uint64(1+32767)
	pid := session.PacketIDFor(first)
	if session.PacketIDFor(second) != pid {
		t.Fatalf("seqs %d and %d do not share a packet id", first, second)
	}
	l := newOpLog()
	var batch broker.Batch
	batch.Add(broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{Version: packet.V311, ExpiryInterval: broker.NoExpiry}})
	batch.Add(broker.Op{Kind: broker.OpPutSubscription, ClientID: id, Sub: &broker.StoredSubscription{Filter: "w", QoS: 2}})
	for _, seq := range []uint64{first, second} {
		batch.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: id, Delivery: &broker.StoredDelivery{
			Seq: seq, QoS: 2, Msg: broker.StoredMessage{Topic: "w", Payload: []byte{byte(seq)}, QoS: 2},
		}})
	}
	if err := l.Store.Commit(&batch, true); err != nil {
		t.Fatal(err)
	}
	_, addr := mqtttest.StartBroker(t, broker.Options{Store: l})
	sub := mqtttest.Dial(t, addr, packet.V311)
	if ack := sub.Connect(&packet.Connect{ClientID: id, KeepAlive: 60}); !ack.SessionPresent {
		t.Fatal("stored session not restored")
	}
	p := sub.ExpectPublish()
	if p.PacketID != pid || p.Payload[0] != byte(first) {
		t.Fatalf("got %+v, want the first delivery under packet id %d", p, pid)
	}
	sub.ExpectNone(50 * time.Millisecond) // the second waits: its id is in flight
	sub.Send(&packet.Pubrec{PacketID: pid})
	if rel, ok := sub.Expect().(*packet.Pubrel); !ok || rel.PacketID != pid {
		t.Fatalf("want PUBREL %d", pid)
	}
	sub.Send(&packet.Pubcomp{PacketID: pid})
	p = sub.ExpectPublish()
	if p.PacketID != pid || p.Payload[0] != byte(second) {
		t.Fatalf("got %+v, want the second delivery under packet id %d", p, pid)
	}
	if !l.removedSynced(first) {
		t.Fatalf("packet id %d given again before the removal of seq %d was written synced", pid, first)
	}
}

// TestWaitingRemovalsAreBounded: the removals waiting for the durable
// pipeline's next commit are bounded per connection: at the 1,024th
// (durableMax) they are committed, synced, without waiting for a job.
func TestWaitingRemovalsAreBounded(t *testing.T) {
	const n = 1024 // durableMax
	l := newOpLog()
	_, addr := mqtttest.StartBroker(t, broker.Options{Store: l, MaxInflight: n})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "many-rm", false)
	sub.Subscribe(1, packet.Subscription{Filter: "w", QoS: 2})
	pids := qos2Window(t, addr, sub, n)
	seqs := l.seqs()
	var buf []byte
	for _, pid := range pids {
		buf, _ = (&packet.Pubrec{PacketID: pid}).Append(buf, packet.V311)
	}
	sub.SendRaw(buf)
	for _, pid := range pids {
		if rel, ok := sub.Expect().(*packet.Pubrel); !ok || rel.PacketID != pid {
			t.Fatalf("want PUBREL %d", pid)
		}
	}
	buf = buf[:0]
	for _, pid := range pids[:n-1] {
		buf, _ = (&packet.Pubcomp{PacketID: pid}).Append(buf, packet.V311)
	}
	sub.SendRaw(buf)
	sub.Send(&packet.Pingreq{})
	if _, ok := sub.Expect().(*packet.Pingresp); !ok {
		t.Fatal("want PINGRESP")
	}
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if l.removed(seqs[0]) {
			t.Fatalf("%d removals committed before the bound", n-1)
		}
	}
	sub.Send(&packet.Pubcomp{PacketID: pids[n-1]})
	deadline := time.Now().Add(5 * time.Second)
	for _, seq := range seqs {
		for !l.removedSynced(seq) {
			if time.Now().After(deadline) {
				t.Fatalf("the removal of seq %d not written synced once %d waited", seq, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
