package broker_test

// Conformance: MQTT 5.0 section 4.9 (flow control) with 3.1.2.11.3 and
// 3.2.2.3.3 (Receive Maximum in both directions) and 3.3.4.

import (
	"fmt"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// receiveMax5 connects id with the given Receive Maximum, clean start and
// session expiry, subscribed to filter at QoS 2 unless filter is "".
func receiveMax5(t *testing.T, addr, id string, rm uint16, clean bool, expiry uint32) (*mqtttest.Client, *packet.Connack) {
	t.Helper()
	p := &packet.Connect{ClientID: id, CleanStart: clean}
	p.Properties.ReceiveMaximum = rm
	p.Properties.Set(packet.PropReceiveMaximum)
	if expiry > 0 {
		p.Properties.SessionExpiryInterval = expiry
		p.Properties.Set(packet.PropSessionExpiryInterval)
	}
	return connect5(t, addr, p)
}

func TestFlow5ClientReceiveMaximum(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	sub, _ := receiveMax5(t, addr, "rm2", 2, true, 0)
	sub5(t, sub, 1, "fc/#", 2, 0)
	pub := client5(t, addr, "pub")
	qos := []byte{1, 2, 1, 2, 1, 1}
	for i, q := range qos {
		pub5(t, pub, "fc/t", q, false, fmt.Sprint(i), uint16(i+1))
	}
	next := func(i int) *packet.Publish {
		t.Helper()
		p := expectPub(t, sub, "fc/t", fmt.Sprint(i))
		if p.QoS != qos[i] {
			t.Fatalf("message %d QoS %d, want %d", i, p.QoS, qos[i])
		}
		return p
	}
	full := func(why string) {
		t.Helper()
		// Never more than Receive Maximum unacknowledged QoS 1/2 PUBLISH
		// packets in flight to the client [MQTT-3.3.4-9].
		expectNothing(t, sub, quiet, "2 unacknowledged in flight, "+why+" [MQTT-3.3.4-9]")
	}
	p0, p1 := next(0), next(1)
	full("none acknowledged")
	sub.Send(&packet.Puback{PacketID: p0.PacketID})
	p2 := next(2)
	full("after one PUBACK")
	// A QoS 2 delivery holds its slot until PUBCOMP, not PUBREC.
	sub.Send(&packet.Pubrec{PacketID: p1.PacketID})
	if r := expect[*packet.Pubrel](t, sub); r.PacketID != p1.PacketID {
		t.Fatalf("PUBREL %d, want %d", r.PacketID, p1.PacketID)
	}
	full("QoS 2 awaiting PUBCOMP")
	sub.Send(&packet.Pubcomp{PacketID: p1.PacketID})
	p3 := next(3)
	full("after PUBCOMP")
	sub.Send(&packet.Puback{PacketID: p2.PacketID})
	p4 := next(4)
	ackPublish(t, sub, p3)
	p5 := next(5)
	sub.Send(&packet.Puback{PacketID: p4.PacketID})
	sub.Send(&packet.Puback{PacketID: p5.PacketID})
	sub.ExpectNone(quiet)
}

func TestFlow5ClientReceiveMaximumQoS0NotCounted(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	sub, _ := receiveMax5(t, addr, "rm1", 1, true, 0)
	sub5(t, sub, 1, "q0/#", 1, 0)
	pub := client5(t, addr, "pub")
	pub5(t, pub, "q0/t", 1, false, "held", 1)
	for i := range 3 {
		pub5(t, pub, "q0/t", 0, false, fmt.Sprint(i), 0)
	}
	// QoS 0 messages do not count against the Receive Maximum (5.0
	// section 4.9) and flow while the one QoS 1 slot is taken.
	expectPub(t, sub, "q0/t", "held")
	for i := range 3 {
		expectPub(t, sub, "q0/t", fmt.Sprint(i))
	}
}

func TestFlow5BrokerReceiveMaximumExceeded(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{ReceiveMaximum: 2})
	sub := client5(t, addr, "sub")
	sub5(t, sub, 1, "rx/#", 2, 0)
	c := client5(t, addr, "greedy")
	// QoS 1 is acknowledged at once and never piles up.
	for i := range 5 {
		pub5(t, c, "rx/q1", 1, false, fmt.Sprint(i), uint16(10+i))
	}
	// Two QoS 2 messages awaiting PUBREL fill the broker's Receive Maximum.
	for pid := uint16(1); pid <= 2; pid++ {
		c.Send(&packet.Publish{Topic: "rx/q2", QoS: 2, PacketID: pid, Payload: []byte("x")})
		if r := expect[*packet.Pubrec](t, c); r.PacketID != pid || r.ReasonCode.IsError() {
			t.Fatalf("PUBREC %d %v", r.PacketID, r.ReasonCode)
		}
	}
	// A resent one of them (DUP) is not a new message.
	c.Send(&packet.Publish{Topic: "rx/q2", QoS: 2, PacketID: 2, Dup: true, Payload: []byte("x")})
	if r := expect[*packet.Pubrec](t, c); r.PacketID != 2 {
		t.Fatalf("PUBREC %d, want 2", r.PacketID)
	}
	// Releasing one makes room for one more.
	c.Send(&packet.Pubrel{PacketID: 1})
	expect[*packet.Pubcomp](t, c)
	c.Send(&packet.Publish{Topic: "rx/q2", QoS: 2, PacketID: 3, Payload: []byte("x")})
	expect[*packet.Pubrec](t, c)
	// A third one awaiting PUBREL exceeds it: DISCONNECT 0x93 (5.0
	// section 3.3.4) [MQTT-3.3.4-7].
	c.Send(&packet.Publish{Topic: "rx/q2", QoS: 2, PacketID: 4, Payload: []byte("x")})
	expectDisconnect(t, c, packet.ReceiveMaximumExceeded)
}

func TestFlow5ClientReceiveMaximumPacesRetainedMessages(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	pub := client5(t, addr, "pub")
	for i := range 3 {
		pub5(t, pub, fmt.Sprintf("rr/%d", i), 1, true, fmt.Sprint(i), uint16(i+1))
	}
	sub, _ := receiveMax5(t, addr, "rr", 1, true, 0)
	sub5(t, sub, 1, "rr/#", 1, 0)
	// Retained messages sent for a new subscription are paced by the
	// client's Receive Maximum too [MQTT-3.3.4-9], and all arrive.
	seen := map[string]bool{}
	for range 3 {
		p := sub.ExpectPublish()
		if !p.Retain {
			t.Fatalf("retained message %q without RETAIN", p.Topic)
		}
		seen[p.Topic] = true
		expectNothing(t, sub, quiet, "one retained message unacknowledged with Receive Maximum 1 [MQTT-3.3.4-9]")
		sub.Send(&packet.Puback{PacketID: p.PacketID})
	}
	if len(seen) != 3 {
		t.Fatalf("got retained messages %v, want rr/0..rr/2", seen)
	}
}

func TestFlow5ReceiveMaximumAppliesToResentMessages(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	sub, _ := receiveMax5(t, addr, "resend", 10, false, 60)
	sub5(t, sub, 1, "rs/#", 1, 0)
	pub := client5(t, addr, "pub")
	for i := range 4 {
		pub5(t, pub, "rs/t", 1, false, fmt.Sprint(i), uint16(i+1))
	}
	for i := range 4 {
		expectPub(t, sub, "rs/t", fmt.Sprint(i)) // not acknowledged
	}
	dropConn5(t, b, sub, "resend")
	// The resumed connection states Receive Maximum 2: the broker resends
	// the unacknowledged messages [MQTT-4.4.0-1] but never has more than
	// 2 in flight [MQTT-3.3.4-9].
	sub, _ = receiveMax5(t, addr, "resend", 2, false, 60)
	var got []*packet.Publish
	for range 2 {
		p := sub.ExpectPublish()
		if !p.Dup {
			t.Fatalf("resent PUBLISH %q without DUP [MQTT-3.3.1-1]", p.Payload)
		}
		got = append(got, p)
	}
	expectNothing(t, sub, quiet, "2 resent messages unacknowledged with Receive Maximum 2 [MQTT-3.3.4-9]")
	for i := range 2 {
		sub.Send(&packet.Puback{PacketID: got[i].PacketID})
		p := sub.ExpectPublish()
		got = append(got, p)
	}
	for i, p := range got {
		if string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("resent message %d is %q, want %q (order kept)", i, p.Payload, fmt.Sprint(i))
		}
	}
	sub.Send(&packet.Puback{PacketID: got[2].PacketID})
	sub.Send(&packet.Puback{PacketID: got[3].PacketID})
	sub.ExpectNone(quiet)
}

func TestFlow5PubrecErrorEndsQoS2Flow(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	sub, _ := receiveMax5(t, addr, "refuser", 1, true, 0)
	sub5(t, sub, 1, "pe/#", 2, 0)
	pub := client5(t, addr, "pub")
	pub5(t, pub, "pe/t", 2, false, "refused", 1)
	pub5(t, pub, "pe/t", 2, false, "next", 2)
	p := expectPub(t, sub, "pe/t", "refused")
	sub.Send(&packet.Pubrec{PacketID: p.PacketID, ReasonCode: packet.UnspecifiedError})
	// A PUBREC of 0x80 or more ends the QoS 2 flow: no PUBREL
	// [MQTT-4.3.3-4], and the slot is free [MQTT-3.3.4-9]: the next
	// message comes.
	q := sub.Expect()
	if r, ok := q.(*packet.Pubrel); ok {
		t.Fatalf("PUBREL %d after PUBREC 0x80 [MQTT-4.3.3-4]", r.PacketID)
	}
	n, ok := q.(*packet.Publish)
	if !ok || string(n.Payload) != "next" {
		t.Fatalf("got %s %+v, want the next PUBLISH", q.Type(), q)
	}
	ackPublish(t, sub, n)
}
