package broker_test

// Conformance: MQTT 3.1.1 sections 3.3-3.7 (PUBLISH, PUBACK, PUBREC,
// PUBREL, PUBCOMP) and 4.3 (QoS flows), 4.6 (ordering).

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestPublishQoS0AtMostOnce(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "q0-sub", true)
	subscribe(t, sub, 1, "q0/t", 2)
	pub := connect(t, addr, "q0-pub", true)
	pub.Send(&packet.Publish{Topic: "q0/t", QoS: 0, Payload: []byte("zero")})
	p := sub.ExpectPublish()
	if p.QoS != 0 || p.PacketID != 0 || p.Dup || string(p.Payload) != "zero" || p.Topic != "q0/t" {
		t.Fatalf("got %+v, want QoS 0 %q without packet id [MQTT-4.3.1-1] [MQTT-2.3.1-5]", p, "zero")
	}
	pub.ExpectNone(quiet) // QoS 0 is not acknowledged [MQTT-4.3.1-1]
	sub.ExpectNone(quiet)
}

func TestPublishQoS1Flow(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "q1-sub", true)
	subscribe(t, sub, 1, "q1/t", 1)
	pub := connect(t, addr, "q1-pub", true)
	for _, pid := range []uint16{1, 0x1234, 0xFFFF} {
		pub.Send(&packet.Publish{Topic: "q1/t", QoS: 1, PacketID: pid, Payload: []byte("one")})
		// PUBACK carries the PUBLISH's packet identifier [MQTT-4.3.2-2] [MQTT-2.3.1-6].
		if a := expect[*packet.Puback](t, pub); a.PacketID != pid {
			t.Fatalf("PUBACK packet id %#x, want %#x", a.PacketID, pid)
		}
		p := sub.ExpectPublish()
		if p.QoS != 1 || p.PacketID == 0 || p.Dup || string(p.Payload) != "one" {
			t.Fatalf("delivered %+v, want QoS 1 with a non-zero packet id, DUP 0 [MQTT-2.3.1-1] [MQTT-3.3.1-1]", p)
		}
		sub.Send(&packet.Puback{PacketID: p.PacketID})
	}
	pub.ExpectNone(quiet)
	sub.ExpectNone(quiet) // acknowledged: not sent again
}

func TestPublishQoS2Flow(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "q2-sub", true)
	subscribe(t, sub, 1, "q2/t", 2)
	pub := connect(t, addr, "q2-pub", true)

	// Inbound: PUBLISH -> PUBREC, PUBREL -> PUBCOMP, same id each time [MQTT-4.3.3-2].
	pub.Send(&packet.Publish{Topic: "q2/t", QoS: 2, PacketID: 0xBEEF, Payload: []byte("two")})
	if r := expect[*packet.Pubrec](t, pub); r.PacketID != 0xBEEF {
		t.Fatalf("PUBREC packet id %#x, want 0xBEEF", r.PacketID)
	}
	pub.Send(&packet.Pubrel{PacketID: 0xBEEF})
	if c := expect[*packet.Pubcomp](t, pub); c.PacketID != 0xBEEF {
		t.Fatalf("PUBCOMP packet id %#x, want 0xBEEF", c.PacketID)
	}

	// Outbound: PUBLISH -> client PUBREC -> PUBREL -> client PUBCOMP [MQTT-4.3.3-1].
	p := sub.ExpectPublish()
	if p.QoS != 2 || p.PacketID == 0 || p.Dup || string(p.Payload) != "two" {
		t.Fatalf("delivered %+v, want QoS 2 %q", p, "two")
	}
	sub.Send(&packet.Pubrec{PacketID: p.PacketID})
	if r := expect[*packet.Pubrel](t, sub); r.PacketID != p.PacketID { // the PUBREL decoded, so its flags were 0x2 [MQTT-3.6.1-1]
		t.Fatalf("PUBREL packet id %d, want %d", r.PacketID, p.PacketID)
	}
	sub.Send(&packet.Pubcomp{PacketID: p.PacketID})
	sub.ExpectNone(quiet)
	pub.ExpectNone(quiet)
}

func TestPublishQoS2DuplicateBeforePubrelDeliveredOnce(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "dup2-sub", true)
	subscribe(t, sub, 1, "dup2/t", 2)
	pub := connect(t, addr, "dup2-pub", true)

	pub.Send(&packet.Publish{Topic: "dup2/t", QoS: 2, PacketID: 7, Payload: []byte("once")})
	if r := expect[*packet.Pubrec](t, pub); r.PacketID != 7 {
		t.Fatalf("PUBREC %d, want 7", r.PacketID)
	}
	for range 3 {
		// The sender resends before PUBREL: acknowledged again, not routed again [MQTT-4.3.3-2].
		pub.Send(&packet.Publish{Topic: "dup2/t", QoS: 2, PacketID: 7, Dup: true, Payload: []byte("once")})
		if r := expect[*packet.Pubrec](t, pub); r.PacketID != 7 {
			t.Fatalf("PUBREC %d, want 7", r.PacketID)
		}
	}
	pub.Send(&packet.Pubrel{PacketID: 7})
	if c := expect[*packet.Pubcomp](t, pub); c.PacketID != 7 {
		t.Fatalf("PUBCOMP %d, want 7", c.PacketID)
	}
	receive(t, sub, "dup2/t", "once", 2)
	sub.ExpectNone(quiet) // delivered exactly once

	// After PUBCOMP the identifier is free: the same id is a new message [MQTT-2.3.1-3].
	publish(t, pub, "dup2/t", 2, false, "again", 7)
	receive(t, sub, "dup2/t", "again", 2)
	sub.ExpectNone(quiet)
}

func TestPublishPubrelForUnknownIDAnsweredWithPubcomp(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := connect(t, addr, "rel-unknown", true)
	c.Send(&packet.Pubrel{PacketID: 99})
	// The receiver MUST respond to a PUBREL with a PUBCOMP with the same id [MQTT-4.3.3-2].
	if p := expect[*packet.Pubcomp](t, c); p.PacketID != 99 {
		t.Fatalf("PUBCOMP %d, want 99", p.PacketID)
	}
}

func TestPublishDeliveredAtMinimumQoS(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	for subQoS := byte(0); subQoS <= 2; subQoS++ {
		for pubQoS := byte(0); pubQoS <= 2; pubQoS++ {
			t.Run(fmt.Sprintf("sub%d-pub%d", subQoS, pubQoS), func(t *testing.T) {
				t.Parallel()
				name := fmt.Sprintf("minqos/%d/%d", subQoS, pubQoS)
				sub := connect(t, addr, name+"-sub", true)
				subscribe(t, sub, 1, name, subQoS) // granted as requested [MQTT-3.9.3-1]
				pub := connect(t, addr, name+"-pub", true)
				publish(t, pub, name, pubQoS, false, "m", 10)
				want := min(subQoS, pubQoS)
				p := receive(t, sub, name, "m", want) // [MQTT-3.8.4-6] min(granted, published)
				if (p.PacketID != 0) != (want > 0) {
					t.Fatalf("packet id %d at QoS %d [MQTT-2.3.1-5]", p.PacketID, want)
				}
				sub.ExpectNone(quiet)
			})
		}
	}
}

func TestPublishOrderedPerTopic(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	const n = 300
	sub := connect(t, addr, "order-sub", true)
	subscribe(t, sub, 1, "order/t", 2)
	pub := connect(t, addr, "order-pub", true)

	// All PUBLISH packets in one write, QoS cycling 0, 1, 2.
	var buf []byte
	for i := range n {
		p := &packet.Publish{Topic: "order/t", QoS: byte(i % 3), Payload: fmt.Appendf(nil, "%d", i)}
		if p.QoS > 0 {
			p.PacketID = uint16(i + 1)
		}
		buf = append(buf, mustEncode(t, p)...)
	}
	pub.SendRaw(buf)
	// Acknowledgements come in the order the PUBLISH packets were received
	// [MQTT-4.6.0-2] [MQTT-4.6.0-3].
	var rels []byte
	for i := range n {
		switch byte(i % 3) {
		case 1:
			if a := expect[*packet.Puback](t, pub); a.PacketID != uint16(i+1) {
				t.Fatalf("PUBACK %d, want %d", a.PacketID, i+1)
			}
		case 2:
			if r := expect[*packet.Pubrec](t, pub); r.PacketID != uint16(i+1) {
				t.Fatalf("PUBREC %d, want %d", r.PacketID, i+1)
			}
			rels = append(rels, mustEncode(t, &packet.Pubrel{PacketID: uint16(i + 1)})...)
		}
	}
	pub.SendRaw(rels)
	for i := range n {
		if i%3 == 2 {
			if c := expect[*packet.Pubcomp](t, pub); c.PacketID != uint16(i+1) {
				t.Fatalf("PUBCOMP %d, want %d", c.PacketID, i+1)
			}
		}
	}

	// The subscriber gets them in publish order [MQTT-4.6.0-6].
	got := readPublishes(t, sub, n, nil)
	for i, p := range got {
		if want := fmt.Sprint(i); string(p.Payload) != want || p.QoS != byte(i%3) {
			t.Fatalf("message %d: payload %q QoS %d, want %q QoS %d", i, p.Payload, p.QoS, want, i%3)
		}
	}
	sub.ExpectNone(quiet)
}

func TestPublishWildcardTopicCloses(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	watcher := connect(t, addr, "wild-watch", true)
	subscribe(t, watcher, 1, "#", 0)
	for i, topic := range []string{"a/+", "a/#", "#", "+", "a/b+", "a#"} {
		t.Run(topic, func(t *testing.T) {
			c := connect(t, addr, fmt.Sprintf("wild-pub-%d", i), true)
			c.SendRaw(rawPacket(0x32, append(appendStr(nil, topic), 0, 1, 'x')))
			expectClosedSilently(t, c) // [MQTT-3.3.2-2]
		})
	}
	watcher.ExpectNone(quiet) // nothing was routed
	roundTrip(t, addr)
}

func TestPublishWithoutSubscribersIsAcknowledged(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := connect(t, addr, "lonely", true)
	publish(t, c, "nobody/listens", 1, false, "x", 1) // [MQTT-4.3.2-2]
	publish(t, c, "nobody/listens", 2, false, "x", 2) // [MQTT-4.3.3-2]
}

func TestPublishDupFlagNotPropagated(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "dupflag-sub", true)
	subscribe(t, sub, 1, "dupflag", 1)
	pub := connect(t, addr, "dupflag-pub", true)
	pub.Send(&packet.Publish{Topic: "dupflag", QoS: 1, PacketID: 3, Dup: true, Payload: []byte("d")})
	if a := expect[*packet.Puback](t, pub); a.PacketID != 3 {
		t.Fatalf("PUBACK %d, want 3", a.PacketID)
	}
	// The DUP flag of an outgoing PUBLISH is set independently of the
	// incoming one [MQTT-3.3.1-3].
	if p := receive(t, sub, "dupflag", "d", 1); p.Dup {
		t.Fatalf("first delivery has DUP set [MQTT-3.3.1-3]")
	}
}

func TestPublishOutboundPacketIDsDistinctWhileInflight(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	const n = 50
	sub := connect(t, addr, "pids-sub", true)
	subscribe(t, sub, 1, "pids/+", 2)
	pub := connect(t, addr, "pids-pub", true)
	for i := range n {
		publish(t, pub, fmt.Sprintf("pids/%d", i%2), byte(1+i%2), false, "p", uint16(i+1))
	}
	seen := map[uint16]bool{}
	var got []*packet.Publish
	for range n {
		p := sub.ExpectPublish()
		if p.PacketID == 0 || seen[p.PacketID] { // [MQTT-2.3.1-1] [MQTT-2.3.1-2]
			t.Fatalf("packet id %d zero or reused while in flight", p.PacketID)
		}
		seen[p.PacketID] = true
		got = append(got, p)
	}
	for _, p := range got {
		if p.QoS == 1 {
			sub.Send(&packet.Puback{PacketID: p.PacketID})
		} else {
			sub.Send(&packet.Pubrec{PacketID: p.PacketID})
			expect[*packet.Pubrel](t, sub)
			sub.Send(&packet.Pubcomp{PacketID: p.PacketID})
		}
	}
	sub.ExpectNone(quiet)
}

func TestPublishPayloads(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "payload-sub", true)
	subscribe(t, sub, 1, "payload/#", 1)
	pub := connect(t, addr, "payload-pub", true)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	binary := []byte{0, 1, 2, 0xFF, 0xFE, 0x80}
	for i, payload := range [][]byte{nil, []byte("x"), binary, big} {
		topic := fmt.Sprintf("payload/%d", i)
		pub.Send(&packet.Publish{Topic: topic, QoS: 1, PacketID: uint16(i + 1), Payload: payload})
		expect[*packet.Puback](t, pub)
		p := sub.ExpectPublish()
		if p.Topic != topic || !bytes.Equal(p.Payload, payload) { // [MQTT-3.3.3-1] payload as sent, zero length allowed
			t.Fatalf("payload %d: got %d bytes on %q, want %d bytes", i, len(p.Payload), p.Topic, len(payload))
		}
		sub.Send(&packet.Puback{PacketID: p.PacketID})
	}
}

func TestPublishPublisherReceivesOwnMessage(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := connect(t, addr, "self", true)
	subscribe(t, c, 1, "self/t", 0)
	c.Send(&packet.Publish{Topic: "self/t", Payload: []byte("me")})
	// 3.1.1 has no no-local option: a client's own message comes back.
	receive(t, c, "self/t", "me", 0)
}

func TestPublishToSYSIsDroppedForClients(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "sys-sub", true)
	subscribe(t, sub, 1, "$SYS/#", 0)
	pub := connect(t, addr, "sys-pub", true)
	// $SYS is broker-only for publishing (DESIGN.md section 3): acknowledged and dropped.
	publish(t, pub, "$SYS/fake", 1, false, "x", 1)
	sub.ExpectNone(quiet)
}

func TestPublishInflightWindowPacesDelivery(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{MaxInflight: 2})
	sub := connect(t, addr, "window-sub", true)
	subscribe(t, sub, 1, "window", 1)
	pub := connect(t, addr, "window-pub", true)
	for i := range 5 {
		publish(t, pub, "window", 1, false, fmt.Sprint(i), uint16(i+1))
	}
	a, b := sub.ExpectPublish(), sub.ExpectPublish()
	sub.ExpectNone(quiet) // window of 2 full
	sub.Send(&packet.Puback{PacketID: a.PacketID})
	c := sub.ExpectPublish()
	sub.ExpectNone(quiet)
	sub.Send(&packet.Puback{PacketID: b.PacketID})
	sub.Send(&packet.Puback{PacketID: c.PacketID})
	rest := readPublishes(t, sub, 2, nil)
	for i, p := range append([]*packet.Publish{a, b, c}, rest...) {
		if string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d payload %q, out of order", i, p.Payload)
		}
	}
	sub.ExpectNone(quiet)
}

func TestPublishAcksForUnknownIDsIgnored(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := connect(t, addr, "stray-acks", true)
	// Acknowledgements for packet ids the broker never used: not a reason
	// to close; no answer (3.1.1 has no reason codes).
	c.Send(&packet.Puback{PacketID: 555})
	c.Send(&packet.Pubrec{PacketID: 556})
	c.Send(&packet.Pubcomp{PacketID: 557})
	c.ExpectNone(quiet)
	c.Send(&packet.Pingreq{})
	expect[*packet.Pingresp](t, c)
}

func TestPublishTopicNames(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "names-sub", true)
	pub := connect(t, addr, "names-pub", true)
	long := "long/" + string(bytes.Repeat([]byte("x"), 65535-5))
	for i, topic := range []string{"ünïcødé/主题/тема", "with space/ and tab\t", "/leading", "trailing/", "a//b", "$notsys/x", long} {
		subscribe(t, sub, uint16(i+1), topic, 1) // an exact filter equal to the name
		publish(t, pub, topic, 1, false, "n", uint16(i+1))
		// Topic names are UTF-8, case sensitive, may contain spaces and
		// empty levels, up to 65535 bytes [MQTT-4.7.3-3] [MQTT-4.7.3-4] [MQTT-1.5.3-1].
		p := sub.ExpectPublish()
		if p.Topic != topic {
			t.Fatalf("got topic %.40q, want %.40q", p.Topic, topic)
		}
		ackPublish(t, sub, p)
	}
}
