package broker_test

// Helpers shared by the conformance5_*_test.go files: black-box MQTT 5.0
// conformance tests over real TCP on 127.0.0.1:0. Clause tags are the 5.0
// specification's ([MQTT-x.y.z-n] of the OASIS standard of 7 March 2019);
// where the specification states a rule without a tag, the section is named.

import (
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// connect5 sends p as a 5.0 CONNECT and fails unless the CONNACK accepts
// it.
func connect5(t testing.TB, addr string, p *packet.Connect) (*mqtttest.Client, *packet.Connack) {
	t.Helper()
	c := mqtttest.Dial(t, addr, packet.V5)
	if p.KeepAlive == 0 {
		p.KeepAlive = 60
	}
	ack := c.Connect(p)
	if ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v (%s), want success", ack.ReasonCode, ack.Properties.ReasonString)
	}
	return c, ack
}

// session5 connects id with clean start and a session expiry interval in
// seconds (0: the session ends with the connection).
func session5(t testing.TB, addr, id string, clean bool, expiry uint32) (*mqtttest.Client, *packet.Connack) {
	t.Helper()
	p := &packet.Connect{ClientID: id, CleanStart: clean}
	if expiry > 0 {
		p.Properties.SessionExpiryInterval = expiry
		p.Properties.Set(packet.PropSessionExpiryInterval)
	}
	return connect5(t, addr, p)
}

// client5 connects a 5.0 client with clean start and no session expiry.
func client5(t testing.TB, addr, id string) *mqtttest.Client {
	t.Helper()
	c, _ := session5(t, addr, id, true, 0)
	return c
}

// subscribe5 sends one SUBSCRIBE with the given subscription identifier
// (0: none) and returns the SUBACK's reason codes.
func subscribe5(t testing.TB, c *mqtttest.Client, pid uint16, subID uint32, subs ...packet.Subscription) []packet.ReasonCode {
	t.Helper()
	p := &packet.Subscribe{PacketID: pid, Subscriptions: subs}
	if subID != 0 {
		p.Properties.SubscriptionIdentifiers = []uint32{subID}
	}
	c.Send(p)
	ack := expect[*packet.Suback](t, c)
	if ack.PacketID != pid {
		t.Fatalf("SUBACK packet id %d, want %d", ack.PacketID, pid)
	}
	if len(ack.ReasonCodes) != len(subs) {
		t.Fatalf("SUBACK has %d reason codes for %d filters [MQTT-3.9.3-1]", len(ack.ReasonCodes), len(subs))
	}
	return ack.ReasonCodes
}

// sub5 subscribes c to filter at qos (with subscription identifier subID
// when not 0) and fails unless it is granted.
func sub5(t testing.TB, c *mqtttest.Client, pid uint16, filter string, qos byte, subID uint32) {
	t.Helper()
	codes := subscribe5(t, c, pid, subID, packet.Subscription{Filter: filter, QoS: qos})
	if codes[0] != packet.ReasonCode(qos) {
		t.Fatalf("SUBACK %v for %q QoS %d, want granted QoS %d", codes[0], filter, qos, qos)
	}
}

// publish5 sends p and completes the publisher's side of its QoS flow. It
// returns the reason code of the PUBACK or PUBREC (Success for QoS 0).
func publish5(t testing.TB, c *mqtttest.Client, p *packet.Publish) packet.ReasonCode {
	t.Helper()
	c.Send(p)
	switch p.QoS {
	case 1:
		a := expect[*packet.Puback](t, c)
		if a.PacketID != p.PacketID {
			t.Fatalf("PUBACK packet id %d, want %d", a.PacketID, p.PacketID)
		}
		return a.ReasonCode
	case 2:
		r := expect[*packet.Pubrec](t, c)
		if r.PacketID != p.PacketID {
			t.Fatalf("PUBREC packet id %d, want %d", r.PacketID, p.PacketID)
		}
		if r.ReasonCode.IsError() {
			return r.ReasonCode
		}
		c.Send(&packet.Pubrel{PacketID: p.PacketID})
		if cp := expect[*packet.Pubcomp](t, c); cp.PacketID != p.PacketID || cp.ReasonCode != packet.Success {
			t.Fatalf("PUBCOMP %d %v, want %d success", cp.PacketID, cp.ReasonCode, p.PacketID)
		}
		return r.ReasonCode
	}
	return packet.Success
}

// pub5 publishes payload to topic at qos (packet id pid) and fails unless
// the acknowledgement is a success (or 0x10, no matching subscribers).
func pub5(t testing.TB, c *mqtttest.Client, topic string, qos byte, retain bool, payload string, pid uint16) {
	t.Helper()
	p := &packet.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)}
	if qos > 0 {
		p.PacketID = pid
	}
	if rc := publish5(t, c, p); rc != packet.Success && rc != packet.NoMatchingSubscribers {
		t.Fatalf("publish to %q: reason %v", topic, rc)
	}
}

// expectPub reads a PUBLISH and checks its topic and payload; it does not
// acknowledge it.
func expectPub(t testing.TB, c *mqtttest.Client, topic, payload string) *packet.Publish {
	t.Helper()
	p := c.ExpectPublish()
	if p.Topic != topic || string(p.Payload) != payload {
		t.Fatalf("got PUBLISH %q %q, want %q %q", p.Topic, p.Payload, topic, payload)
	}
	return p
}

// expectNothing fails, naming why, if a packet arrives on c within d or
// the connection fails.
func expectNothing(t testing.TB, c *mqtttest.Client, d time.Duration, why string) {
	t.Helper()
	p, err := c.Read(d)
	if err == nil {
		t.Fatalf("%s: got %s %+v, want nothing", why, p.Type(), p)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: connection failed: %v", why, err)
	}
}

// expectDisconnect fails unless the broker sends DISCONNECT with code and
// then closes the connection. Packets before the DISCONNECT are returned.
func expectDisconnect(t testing.TB, c *mqtttest.Client, code packet.ReasonCode) []packet.Packet {
	t.Helper()
	got := c.ExpectClosed()
	if len(got) == 0 {
		t.Fatalf("connection closed without DISCONNECT, want DISCONNECT %v", code)
	}
	d, ok := got[len(got)-1].(*packet.Disconnect)
	if !ok {
		t.Fatalf("last packet before close is %s %+v, want DISCONNECT %v", got[len(got)-1].Type(), got[len(got)-1], code)
	}
	if d.ReasonCode != code {
		t.Fatalf("DISCONNECT %v (%s), want %v", d.ReasonCode, d.Properties.ReasonString, code)
	}
	if d.Properties.Has(packet.PropSessionExpiryInterval) {
		t.Fatalf("server DISCONNECT carries a session expiry interval [MQTT-3.14.2-2]")
	}
	return got[:len(got)-1]
}

// expectConnackRefused fails unless the broker answers CONNACK code and
// closes the connection [MQTT-3.2.2-7].
func expectConnackRefused(t testing.TB, c *mqtttest.Client, code packet.ReasonCode) *packet.Connack {
	t.Helper()
	got := c.ExpectClosed()
	if len(got) != 1 {
		t.Fatalf("got %d packets before close %v, want exactly one CONNACK %v", len(got), got, code)
	}
	ack, ok := got[0].(*packet.Connack)
	if !ok {
		t.Fatalf("got %s %+v before close, want CONNACK %v", got[0].Type(), got[0], code)
	}
	if ack.ReasonCode != code {
		t.Fatalf("CONNACK %v (%s), want %v", ack.ReasonCode, ack.Properties.ReasonString, code)
	}
	if ack.SessionPresent {
		t.Fatalf("refusing CONNACK with session present 1 [MQTT-3.2.2-6]")
	}
	return ack
}

// dropConn5 closes c's network connection without DISCONNECT and waits
// until the broker has noticed.
func dropConn5(t *testing.T, b *broker.Broker, c *mqtttest.Client, id string) {
	t.Helper()
	if err := c.Conn.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitOffline(t, b, id)
}

// disconnect5 sends a 5.0 DISCONNECT with code (and a session expiry
// interval when expiry is not nil), waits for the close and for the
// broker to detach the session.
func disconnect5(t *testing.T, b *broker.Broker, c *mqtttest.Client, id string, code packet.ReasonCode, expiry *uint32) {
	t.Helper()
	d := &packet.Disconnect{ReasonCode: code}
	if expiry != nil {
		d.Properties.SessionExpiryInterval = *expiry
		d.Properties.Set(packet.PropSessionExpiryInterval)
	}
	c.Send(d)
	expectClosedSilently(t, c)
	waitOffline(t, b, id)
}

// waitGone waits until the broker no longer holds a session for id.
func waitGone(t *testing.T, b *broker.Broker, id string, within time.Duration) {
	t.Helper()
	mqtttest.Eventually(t, within, func() bool {
		_, ok := b.ClientStats(id)
		return !ok
	}, "session of "+id+" discarded")
}

// hasSession reports whether the broker holds a session for id.
func hasSession(b *broker.Broker, id string) bool {
	_, ok := b.ClientStats(id)
	return ok
}

// u32 returns a pointer to x.
func u32(x uint32) *uint32 { return &x }

// fakeClock is an Options.Now that tests move forward by hand, so that
// message expiry needs no waiting.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// sortedIDs returns the subscription identifiers of p, sorted.
func sortedIDs(p *packet.Publish) []uint32 {
	ids := slices.Clone(p.Properties.SubscriptionIdentifiers)
	slices.Sort(ids)
	return ids
}

// willConnect5 connects id with clean start, session expiry expiry and a
// QoS 1 will on topic with payload "gone" and will delay delay (seconds).
func willConnect5(t testing.TB, addr, id string, clean bool, expiry, delay uint32, topic string) *mqtttest.Client {
	t.Helper()
	w := &packet.Will{Topic: topic, Payload: []byte("gone"), QoS: 1}
	if delay > 0 {
		w.Properties.WillDelayInterval = delay
		w.Properties.Set(packet.PropWillDelayInterval)
	}
	p := &packet.Connect{ClientID: id, CleanStart: clean, Will: w}
	if expiry > 0 {
		p.Properties.SessionExpiryInterval = expiry
		p.Properties.Set(packet.PropSessionExpiryInterval)
	}
	c, _ := connect5(t, addr, p)
	return c
}
