package broker_test

// Helpers shared by the conformance_*_test.go files: black-box MQTT 3.1.1
// conformance tests over real TCP on 127.0.0.1:0, grouped by spec section.

import (
	"fmt"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// quiet is how long a test waits to assert that nothing arrives.
const quiet = 200 * time.Millisecond

// startBroker starts a broker with default options.
func startBroker(t *testing.T) (*broker.Broker, string) {
	t.Helper()
	return mqtttest.StartBroker(t, broker.Options{})
}

// connect opens a 3.1.1 connection with the given client id and clean flag.
func connect(t *testing.T, addr, id string, clean bool) *mqtttest.Client {
	t.Helper()
	c, _ := mqtttest.Connect(t, addr, packet.V311, id, clean)
	return c
}

// expect reads the next packet and fails unless it has type T.
func expect[T packet.Packet](t testing.TB, c *mqtttest.Client) T {
	t.Helper()
	p := c.Expect()
	v, ok := p.(T)
	if !ok {
		var zero T
		t.Fatalf("expected %T, got %s %+v", zero, p.Type(), p)
	}
	return v
}

// publish sends a PUBLISH and completes the publisher's side of its QoS
// flow: PUBACK for QoS 1, PUBREC/PUBREL/PUBCOMP for QoS 2, each checked for
// the packet identifier.
func publish(t testing.TB, c *mqtttest.Client, topic string, qos byte, retain bool, payload string, pid uint16) {
	t.Helper()
	p := &packet.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)}
	if qos > 0 {
		p.PacketID = pid
	}
	c.Send(p)
	switch qos {
	case 1:
		if a := expect[*packet.Puback](t, c); a.PacketID != pid { // [MQTT-2.3.1-6]
			t.Fatalf("PUBACK packet id %d, want %d", a.PacketID, pid)
		}
	case 2:
		if r := expect[*packet.Pubrec](t, c); r.PacketID != pid {
			t.Fatalf("PUBREC packet id %d, want %d", r.PacketID, pid)
		}
		c.Send(&packet.Pubrel{PacketID: pid})
		if r := expect[*packet.Pubcomp](t, c); r.PacketID != pid {
			t.Fatalf("PUBCOMP packet id %d, want %d", r.PacketID, pid)
		}
	}
}

// ackPublish completes the receiver's side of an inbound PUBLISH's QoS flow.
func ackPublish(t testing.TB, c *mqtttest.Client, p *packet.Publish) {
	t.Helper()
	switch p.QoS {
	case 1:
		c.Send(&packet.Puback{PacketID: p.PacketID})
	case 2:
		c.Send(&packet.Pubrec{PacketID: p.PacketID})
		if r := expect[*packet.Pubrel](t, c); r.PacketID != p.PacketID {
			t.Fatalf("PUBREL packet id %d, want %d", r.PacketID, p.PacketID)
		}
		c.Send(&packet.Pubcomp{PacketID: p.PacketID})
	}
}

// receive reads a PUBLISH, checks topic, payload and QoS, and acks it.
func receive(t testing.TB, c *mqtttest.Client, topic, payload string, qos byte) *packet.Publish {
	t.Helper()
	p := c.ExpectPublish()
	if p.Topic != topic || string(p.Payload) != payload || p.QoS != qos {
		t.Fatalf("got PUBLISH %q %q QoS %d, want %q %q QoS %d", p.Topic, p.Payload, p.QoS, topic, payload, qos)
	}
	ackPublish(t, c, p)
	return p
}

// subscribe subscribes c to filter at qos and checks the granted QoS.
func subscribe(t testing.TB, c *mqtttest.Client, pid uint16, filter string, qos byte) {
	t.Helper()
	codes := c.Subscribe(pid, packet.Subscription{Filter: filter, QoS: qos})
	if len(codes) != 1 || codes[0] != packet.ReasonCode(qos) {
		t.Fatalf("SUBACK %v for %q QoS %d, want [%d]", codes, filter, qos, qos)
	}
}

// expectClosedSilently fails unless the broker closes c without sending
// anything first.
func expectClosedSilently(t testing.TB, c *mqtttest.Client) {
	t.Helper()
	if got := c.ExpectClosed(); len(got) != 0 {
		t.Fatalf("connection closed after %d packet(s), want none; first %s %+v", len(got), got[0].Type(), got[0])
	}
}

// expectRefused fails unless the broker answers CONNACK with the 3.x
// return code rc and then closes the connection [MQTT-3.2.2-5].
func expectRefused(t testing.TB, c *mqtttest.Client, rc byte) {
	t.Helper()
	got := c.ExpectClosed()
	if len(got) != 1 {
		t.Fatalf("got %d packets before close, want exactly one CONNACK: %v", len(got), got)
	}
	ack, ok := got[0].(*packet.Connack)
	if !ok {
		t.Fatalf("got %s before close, want CONNACK", got[0].Type())
	}
	if code := packet.ConnackReturnCode(ack.ReasonCode); code != rc {
		t.Fatalf("CONNACK return code %d (%v), want %d", code, ack.ReasonCode, rc)
	}
	if ack.SessionPresent {
		t.Fatalf("CONNACK session present with a failure code [MQTT-3.2.2-4]")
	}
}

// roundTrip checks that the broker still serves clients: a fresh subscriber
// receives a fresh publisher's QoS 1 message.
func roundTrip(t testing.TB, addr string) {
	t.Helper()
	id := fmt.Sprintf("rt-%d", time.Now().UnixNano())
	sub, _ := mqtttest.Connect(t, addr, packet.V311, id+"-s", true)
	subscribe(t, sub, 1, "roundtrip/"+id, 1)
	pub, _ := mqtttest.Connect(t, addr, packet.V311, id+"-p", true)
	publish(t, pub, "roundtrip/"+id, 1, false, "ping", 1)
	receive(t, sub, "roundtrip/"+id, "ping", 1)
}

// rawConnect builds a CONNECT packet byte by byte, so that tests can send
// what the encoder refuses to: the variable header (protocol name, level,
// flags, keepalive) and the given payload fields, each written as an MQTT
// string.
func rawConnect(name string, level, flags byte, keepAlive uint16, fields ...string) []byte {
	body := appendStr(nil, name)
	body = append(body, level, flags, byte(keepAlive>>8), byte(keepAlive))
	for _, f := range fields {
		body = appendStr(body, f)
	}
	return rawPacket(0x10, body)
}

// rawPacket frames body with the first byte hdr and its remaining length.
func rawPacket(hdr byte, body []byte) []byte {
	out := []byte{hdr}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func appendStr(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

// readPublishes reads PUBLISH packets on c until done returns true for
// one (or, for done nil, until n have arrived), answering every QoS flow as
// packets come: PUBACK for QoS 1, PUBREC for QoS 2 and PUBCOMP for each
// PUBREL, also when they interleave with further PUBLISH packets. It
// returns once every QoS 2 flow it started is complete.
func readPublishes(t testing.TB, c *mqtttest.Client, n int, done func(*packet.Publish) bool) []*packet.Publish {
	t.Helper()
	var got []*packet.Publish
	rel := map[uint16]bool{}
	finished := false
	for !finished || len(rel) > 0 {
		switch p := c.Expect().(type) {
		case *packet.Publish:
			got = append(got, p)
			switch p.QoS {
			case 1:
				c.Send(&packet.Puback{PacketID: p.PacketID})
			case 2:
				c.Send(&packet.Pubrec{PacketID: p.PacketID})
				rel[p.PacketID] = true
			}
			if done != nil {
				finished = finished || done(p)
			} else {
				finished = len(got) >= n
			}
		case *packet.Pubrel:
			if !rel[p.PacketID] {
				t.Fatalf("PUBREL for packet id %d, which awaits none", p.PacketID)
			}
			delete(rel, p.PacketID)
			c.Send(&packet.Pubcomp{PacketID: p.PacketID})
		default:
			t.Fatalf("expected PUBLISH or PUBREL, got %s %+v", p.Type(), p)
		}
	}
	return got
}

// collectUntil reads PUBLISH packets on c, acking them, until one arrives
// on topic stop; it returns the topics received before it.
func collectUntil(t testing.TB, c *mqtttest.Client, stop string) []string {
	t.Helper()
	var got []string
	for _, p := range readPublishes(t, c, 0, func(p *packet.Publish) bool { return p.Topic == stop }) {
		if p.Topic != stop {
			got = append(got, p.Topic)
		}
	}
	return got
}
