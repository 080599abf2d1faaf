package broker_test

// Conformance: MQTT 5.0 sections 3.3.2.3 (PUBLISH properties: payload
// format indicator, message expiry, topic alias, response topic,
// correlation data, user properties, subscription identifier, content
// type), 3.4.2.1 (PUBACK reason codes) and 3.1.2.11.4 / 3.2.2.3.6
// (maximum packet size in both directions).

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// aliasPub returns a PUBLISH on topic carrying topic alias a.
func aliasPub(topic string, a uint16, payload string) *packet.Publish {
	p := &packet.Publish{Topic: topic, Payload: []byte(payload)}
	p.Properties.TopicAlias = a
	p.Properties.Set(packet.PropTopicAlias)
	return p
}

func TestPublish5InboundTopicAlias(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	sub := client5(t, addr, "sub")
	sub5(t, sub, 1, "ta/#", 0, 0)
	pub := client5(t, addr, "pub")

	// A topic and an alias set the mapping; the alias alone then stands
	// for the topic [MQTT-3.3.2-12] (5.0 section 3.3.2.3.4).
	pub.Send(aliasPub("ta/one", 1, "first"))
	pub.Send(aliasPub("", 1, "second"))
	pub.Send(aliasPub("ta/two", 100, "max"))
	pub.Send(aliasPub("", 100, "max again"))
	// Setting an alias again replaces its mapping.
	pub.Send(aliasPub("ta/three", 1, "remapped"))
	pub.Send(aliasPub("", 1, "third"))
	for _, w := range [][2]string{
		{"ta/one", "first"}, {"ta/one", "second"}, {"ta/two", "max"}, {"ta/two", "max again"},
		{"ta/three", "remapped"}, {"ta/three", "third"},
	} {
		p := expectPub(t, sub, w[0], w[1])
		// The subscriber allowed no aliases: none is sent to it [MQTT-3.1.2-27].
		if p.Properties.Has(packet.PropTopicAlias) {
			t.Fatalf("topic alias %d sent to a client with Topic Alias Maximum 0 [MQTT-3.1.2-27]", p.Properties.TopicAlias)
		}
	}
}

func TestPublish5InboundTopicAliasErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts broker.Options
		p    *packet.Publish
		code packet.ReasonCode
	}{
		// Above the broker's Topic Alias Maximum [MQTT-3.3.2-9]: 0x94
		// (5.0 section 3.3.2.3.4).
		{"above maximum", broker.Options{}, aliasPub("x/y", 101, "p"), packet.TopicAliasInvalid},
		{"above configured maximum", broker.Options{TopicAliasMaximum: 3}, aliasPub("x/y", 4, "p"), packet.TopicAliasInvalid},
		{"aliases disabled", broker.Options{TopicAliasMaximum: -1}, aliasPub("x/y", 1, "p"), packet.TopicAliasInvalid},
		// An alias with an empty topic that has no mapping is a protocol
		// error (5.0 section 3.3.4).
		{"unknown alias", broker.Options{}, aliasPub("", 7, "p"), packet.ProtocolError},
		// An empty topic without an alias is a protocol error.
		{"empty topic without alias", broker.Options{}, &packet.Publish{Topic: "", Payload: []byte("p")}, packet.ProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := mqtttest.StartBroker(t, tc.opts)
			sub := client5(t, addr, "sub")
			sub5(t, sub, 1, "#", 0, 0)
			c := client5(t, addr, "bad")
			c.Send(tc.p)
			expectDisconnect(t, c, tc.code)
			sub.ExpectNone(quiet)
		})
	}
}

func TestPublish5InboundTopicAliasNotCarriedAcrossConnections(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	c, _ := session5(t, addr, "carry", false, 60)
	c.Send(aliasPub("carry/t", 1, "set"))
	dropConn5(t, b, c, "carry")
	// Alias mappings end with the connection, even when the session
	// goes on [MQTT-3.3.2-7].
	c = resume5(t, addr, "carry", 60, true)
	c.Send(aliasPub("", 1, "use"))
	expectDisconnect(t, c, packet.ProtocolError)
}

// aliasResolver plays the receiving client's side of outbound topic
// aliases and checks the broker's use of them.
type aliasResolver struct {
	max uint16
	m   map[uint16]string
}

// resolve returns p's topic name, checking its alias.
func (r *aliasResolver) resolve(t *testing.T, p *packet.Publish) string {
	t.Helper()
	if !p.Properties.Has(packet.PropTopicAlias) {
		if p.Topic == "" {
			t.Fatalf("PUBLISH with neither topic nor alias")
		}
		return p.Topic
	}
	a := p.Properties.TopicAlias
	if a == 0 || a > r.max {
		// Never 0 [MQTT-3.3.2-8], never above the client's maximum [MQTT-3.3.2-11] [MQTT-3.1.2-26].
		t.Fatalf("topic alias %d outside 1..%d [MQTT-3.3.2-11]", a, r.max)
	}
	if p.Topic != "" {
		r.m[a] = p.Topic
		return p.Topic
	}
	topic, ok := r.m[a]
	if !ok {
		t.Fatalf("empty topic with alias %d the broker never set", a)
	}
	return topic
}

func TestPublish5OutboundTopicAliases(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	conn := func() *mqtttest.Client {
		p := &packet.Connect{ClientID: "aliased", CleanStart: false}
		p.Properties.TopicAliasMaximum = 2
		p.Properties.Set(packet.PropTopicAliasMaximum)
		p.Properties.SessionExpiryInterval = 60
		p.Properties.Set(packet.PropSessionExpiryInterval)
		c, _ := connect5(t, addr, p)
		return c
	}
	sub := conn()
	sub5(t, sub, 1, "oa/#", 1, 0)
	pub := client5(t, addr, "pub")
	topics := []string{"oa/1", "oa/1", "oa/2", "oa/3", "oa/1", "oa/2", "oa/3"}
	for i, tp := range topics {
		pub5(t, pub, tp, 1, false, fmt.Sprint(i), uint16(i+1))
	}
	r := &aliasResolver{max: 2, m: map[uint16]string{}}
	var got []*packet.Publish
	for i, tp := range topics {
		p := sub.ExpectPublish()
		sub.Send(&packet.Puback{PacketID: p.PacketID})
		if topic := r.resolve(t, p); topic != tp || string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d: %q %q, want %q %q", i, topic, p.Payload, tp, fmt.Sprint(i))
		}
		got = append(got, p)
	}
	// The broker uses the aliases the client allows: the first message on
	// a topic carries topic and alias, the next one the alias alone
	// (5.0 section 3.3.2.3.4).
	first, second := got[0], got[1]
	if first.Topic != "oa/1" || !first.Properties.Has(packet.PropTopicAlias) {
		t.Fatalf("first delivery on oa/1: topic %q alias %v, want topic and alias", first.Topic, first.Properties.Has(packet.PropTopicAlias))
	}
	if second.Topic != "" || !second.Properties.Has(packet.PropTopicAlias) || second.Properties.TopicAlias != first.Properties.TopicAlias {
		t.Fatalf("second delivery on oa/1: topic %q alias %d, want empty topic and alias %d",
			second.Topic, second.Properties.TopicAlias, first.Properties.TopicAlias)
	}

	// A new connection starts without mappings [MQTT-3.3.2-7]: the first
	// message on each topic carries the topic again.
	dropConn5(t, b, sub, "aliased")
	sub = conn()
	pub5(t, pub, "oa/1", 1, false, "again", 100)
	p := expectPub(t, sub, "oa/1", "again")
	if p.Properties.Has(packet.PropTopicAlias) && (p.Properties.TopicAlias == 0 || p.Properties.TopicAlias > 2) {
		t.Fatalf("topic alias %d outside 1..2", p.Properties.TopicAlias)
	}
}

func TestPublish5MessageExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b, addr := mqtttest.StartBroker(t, broker.Options{Now: clock.Now})
	sub, _ := session5(t, addr, "exp", false, 60)
	sub5(t, sub, 1, "exp/#", 1, 0)
	pub := client5(t, addr, "pub")
	withExpiry := func(topic string, secs uint32, pid uint16) *packet.Publish {
		p := &packet.Publish{Topic: topic, QoS: 1, PacketID: pid, Payload: []byte(topic)}
		p.Properties.MessageExpiryInterval = secs
		p.Properties.Set(packet.PropMessageExpiryInterval)
		return p
	}

	// Delivered at once: the interval forwarded is at most the one
	// published [MQTT-3.3.2-6].
	publish5(t, pub, withExpiry("exp/live", 10, 1))
	p := expectPub(t, sub, "exp/live", "exp/live")
	sub.Send(&packet.Puback{PacketID: p.PacketID})
	if !p.Properties.Has(packet.PropMessageExpiryInterval) || p.Properties.MessageExpiryInterval == 0 || p.Properties.MessageExpiryInterval > 10 {
		t.Fatalf("Message Expiry Interval %v %d, want 1..10 [MQTT-3.3.2-6]", p.Properties.Has(packet.PropMessageExpiryInterval), p.Properties.MessageExpiryInterval)
	}

	// Queued while the subscriber is away.
	dropConn5(t, b, sub, "exp")
	publish5(t, pub, withExpiry("exp/short", 1, 2))
	publish5(t, pub, withExpiry("exp/long", 10, 3))
	pub5(t, pub, "exp/none", 1, false, "exp/none", 4)
	clock.Advance(3 * time.Second)
	sub = resume5(t, addr, "exp", 60, true)
	// The expired message is not delivered [MQTT-3.3.2-5]; the other one
	// carries what is left of its interval [MQTT-3.3.2-6].
	p = expectPub(t, sub, "exp/long", "exp/long")
	sub.Send(&packet.Puback{PacketID: p.PacketID})
	if p.Properties.MessageExpiryInterval != 7 {
		t.Fatalf("Message Expiry Interval %d after 3s of 10s, want 7 [MQTT-3.3.2-6]", p.Properties.MessageExpiryInterval)
	}
	p = expectPub(t, sub, "exp/none", "exp/none")
	sub.Send(&packet.Puback{PacketID: p.PacketID})
	if p.Properties.Has(packet.PropMessageExpiryInterval) {
		t.Fatalf("message published without expiry delivered with interval %d", p.Properties.MessageExpiryInterval)
	}
	sub.ExpectNone(quiet)
}

func TestPublish5RetainedMessageExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	_, addr := mqtttest.StartBroker(t, broker.Options{Now: clock.Now})
	pub := client5(t, addr, "pub")
	for i, secs := range []uint32{1, 10} {
		p := &packet.Publish{Topic: fmt.Sprintf("rx/%d", secs), QoS: 1, PacketID: uint16(i + 1), Retain: true, Payload: []byte("r")}
		p.Properties.MessageExpiryInterval = secs
		p.Properties.Set(packet.PropMessageExpiryInterval)
		publish5(t, pub, p)
	}
	clock.Advance(4 * time.Second)
	sub := client5(t, addr, "sub")
	sub5(t, sub, 1, "rx/#", 1, 0)
	// A retained message past its expiry is not sent [MQTT-3.3.2-5]; the
	// live one carries its remaining interval [MQTT-3.3.2-6].
	p := expectPub(t, sub, "rx/10", "r")
	if !p.Retain || p.Properties.MessageExpiryInterval != 6 {
		t.Fatalf("retained message: retain %v, Message Expiry Interval %d, want retained with 6", p.Retain, p.Properties.MessageExpiryInterval)
	}
	sub.Send(&packet.Puback{PacketID: p.PacketID})
	sub.ExpectNone(quiet)
}

func TestPublish5PayloadFormatIndicator(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	sub := client5(t, addr, "sub")
	sub5(t, sub, 1, "pfi/#", 1, 0)
	pub := client5(t, addr, "pub")
	utf8Pub := func(topic string, qos byte, pid uint16, payload []byte) *packet.Publish {
		p := &packet.Publish{Topic: topic, QoS: qos, PacketID: pid, Payload: payload}
		p.Properties.PayloadFormatIndicator = 1
		p.Properties.Set(packet.PropPayloadFormatIndicator)
		return p
	}
	bad := []byte{'o', 'k', 0xff, 0xfe}

	// Declared UTF-8 but not: PUBACK / PUBREC 0x99, not forwarded (5.0
	// section 3.3.2.3.2).
	if rc := publish5(t, pub, utf8Pub("pfi/q1", 1, 1, bad)); rc != packet.PayloadFormatInvalid {
		t.Fatalf("QoS 1 invalid UTF-8: PUBACK %v, want 0x99", rc)
	}
	if rc := publish5(t, pub, utf8Pub("pfi/q2", 2, 2, bad)); rc != packet.PayloadFormatInvalid {
		t.Fatalf("QoS 2 invalid UTF-8: PUBREC %v, want 0x99", rc)
	}
	sub.ExpectNone(quiet)

	// Valid UTF-8 goes through with the indicator unaltered [MQTT-3.3.2-4];
	// indicator 0 payloads are not checked.
	publish5(t, pub, utf8Pub("pfi/ok", 1, 3, []byte("héllo")))
	p := expectPub(t, sub, "pfi/ok", "héllo")
	sub.Send(&packet.Puback{PacketID: p.PacketID})
	if !p.Properties.Has(packet.PropPayloadFormatIndicator) || p.Properties.PayloadFormatIndicator != 1 {
		t.Fatalf("Payload Format Indicator not forwarded unaltered [MQTT-3.3.2-4]")
	}
	pub5(t, pub, "pfi/bin", 1, false, string(bad), 4)
	p = expectPub(t, sub, "pfi/bin", string(bad))
	sub.Send(&packet.Puback{PacketID: p.PacketID})

	// QoS 0 has no acknowledgement to carry the code: DISCONNECT 0x99.
	pub.Send(utf8Pub("pfi/q0", 0, 0, bad))
	expectDisconnect(t, pub, packet.PayloadFormatInvalid)
	sub.ExpectNone(quiet)
}

func TestPublish5RequestResponseEndToEnd(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	requester := client5(t, addr, "requester")
	responder := client5(t, addr, "responder")
	sub5(t, requester, 1, "resp/requester", 1, 0)
	sub5(t, responder, 1, "svc/echo", 1, 0)

	req := &packet.Publish{Topic: "svc/echo", QoS: 1, PacketID: 1, Payload: []byte("ping")}
	rp := &req.Properties
	rp.ResponseTopic = "resp/requester"
	rp.Set(packet.PropResponseTopic)
	rp.CorrelationData = []byte{0x00, 0xff, 'c', 0x01}
	rp.Set(packet.PropCorrelationData)
	rp.ContentType = "application/x-test; v=1"
	rp.Set(packet.PropContentType)
	rp.UserProperties = []packet.UserProperty{{Key: "z", Value: "1"}, {Key: "a", Value: "2"}, {Key: "z", Value: "3"}, {Key: "", Value: ""}}
	publish5(t, requester, req)

	got := expectPub(t, responder, "svc/echo", "ping")
	responder.Send(&packet.Puback{PacketID: got.PacketID})
	gp := &got.Properties
	// Response Topic [MQTT-3.3.2-15], Correlation Data [MQTT-3.3.2-16],
	// User Properties in order [MQTT-3.3.2-17] [MQTT-3.3.2-18] and Content
	// Type [MQTT-3.3.2-20] reach the subscriber unaltered.
	if gp.ResponseTopic != rp.ResponseTopic {
		t.Fatalf("Response Topic %q, want %q [MQTT-3.3.2-15]", gp.ResponseTopic, rp.ResponseTopic)
	}
	if !bytes.Equal(gp.CorrelationData, rp.CorrelationData) {
		t.Fatalf("Correlation Data % X, want % X [MQTT-3.3.2-16]", gp.CorrelationData, rp.CorrelationData)
	}
	if !slices.Equal(gp.UserProperties, rp.UserProperties) {
		t.Fatalf("User Properties %v, want %v in order [MQTT-3.3.2-17] [MQTT-3.3.2-18]", gp.UserProperties, rp.UserProperties)
	}
	if gp.ContentType != rp.ContentType {
		t.Fatalf("Content Type %q, want %q [MQTT-3.3.2-20]", gp.ContentType, rp.ContentType)
	}

	// The responder answers on the response topic with the correlation
	// data; the requester gets it.
	resp := &packet.Publish{Topic: gp.ResponseTopic, QoS: 1, PacketID: 7, Payload: []byte("pong")}
	resp.Properties.CorrelationData = gp.CorrelationData
	resp.Properties.Set(packet.PropCorrelationData)
	publish5(t, responder, resp)
	back := expectPub(t, requester, "resp/requester", "pong")
	if !bytes.Equal(back.Properties.CorrelationData, rp.CorrelationData) {
		t.Fatalf("response Correlation Data % X, want % X", back.Properties.CorrelationData, rp.CorrelationData)
	}
}

func TestPublish5ResponseTopicWithWildcardIsProtocolError(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := client5(t, addr, "rtw")
	p := &packet.Publish{Topic: "a/b", Payload: []byte("x")}
	p.Properties.ResponseTopic = "resp/#"
	p.Properties.Set(packet.PropResponseTopic)
	c.Send(p)
	// A Response Topic is a topic name, without wildcards [MQTT-3.3.2-14].
	expectDisconnect(t, c, packet.ProtocolError)
}

func TestPublish5FromClientWithSubscriptionIdentifier(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	sub := client5(t, addr, "sub")
	sub5(t, sub, 1, "sid/#", 0, 0)
	c := client5(t, addr, "sid")
	p := &packet.Publish{Topic: "sid/x", Payload: []byte("x")}
	p.Properties.SubscriptionIdentifiers = []uint32{5}
	c.Send(p)
	// A PUBLISH from a client carries no Subscription Identifier
	// [MQTT-3.3.4-6]: protocol error.
	expectDisconnect(t, c, packet.ProtocolError)
	sub.ExpectNone(quiet)
}

func TestPublish5NoMatchingSubscribers(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	pub := client5(t, addr, "pub")
	// Nobody subscribes: PUBACK / PUBREC 0x10 (5.0 sections 3.4.2.1,
	// 3.5.2.1); the QoS 2 flow still completes.
	if rc := publish5(t, pub, &packet.Publish{Topic: "nms/x", QoS: 1, PacketID: 1}); rc != packet.NoMatchingSubscribers {
		t.Fatalf("QoS 1 with no subscribers: PUBACK %v, want 0x10", rc)
	}
	if rc := publish5(t, pub, &packet.Publish{Topic: "nms/x", QoS: 2, PacketID: 2}); rc != packet.NoMatchingSubscribers {
		t.Fatalf("QoS 2 with no subscribers: PUBREC %v, want 0x10", rc)
	}
	sub := client5(t, addr, "sub")
	sub5(t, sub, 1, "nms/#", 1, 0)
	if rc := publish5(t, pub, &packet.Publish{Topic: "nms/x", QoS: 1, PacketID: 3}); rc != packet.Success {
		t.Fatalf("QoS 1 with a subscriber: PUBACK %v, want success", rc)
	}
}

func TestPublish5ClientMaximumPacketSize(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	cp := &packet.Connect{ClientID: "small", CleanStart: true}
	cp.Properties.MaximumPacketSize = 100
	cp.Properties.Set(packet.PropMaximumPacketSize)
	cp.Properties.ReceiveMaximum = 1 // a dropped message must not hold the only inflight slot
	cp.Properties.Set(packet.PropReceiveMaximum)
	sub, _ := connect5(t, addr, cp)
	sub5(t, sub, 1, "mps/#", 1, 0)
	pub := client5(t, addr, "pub")
	big := strings.Repeat("B", 200)
	pub5(t, pub, "mps/big", 1, false, big, 1)
	pub5(t, pub, "mps/big0", 0, false, big, 0)
	pub5(t, pub, "mps/small", 1, false, "s", 2)
	// A packet above the client's Maximum Packet Size is not sent
	// [MQTT-3.1.2-24]; the broker goes on as if it had been delivered
	// [MQTT-3.1.2-25], so later smaller messages arrive.
	p := sub.ExpectPublish()
	if p.Topic != "mps/small" {
		t.Fatalf("got PUBLISH %q (%d bytes payload), want only mps/small [MQTT-3.1.2-24]", p.Topic, len(p.Payload))
	}
	sub.Send(&packet.Puback{PacketID: p.PacketID})
	sub.ExpectNone(quiet)
}

func TestPublish5InboundPacketTooLarge(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{MaxPacketSize: 256})
	sub := client5(t, addr, "sub")
	sub5(t, sub, 1, "big/#", 0, 0)
	c := client5(t, addr, "big")
	pub5(t, c, "big/ok", 1, false, strings.Repeat("o", 100), 1)
	expectPub(t, sub, "big/ok", strings.Repeat("o", 100))
	c.Send(&packet.Publish{Topic: "big/no", Payload: []byte(strings.Repeat("x", 300))})
	// A packet above the Maximum Packet Size the broker announced
	// [MQTT-3.2.2-15]: DISCONNECT 0x95 (5.0 section 3.2.2.3.6).
	expectDisconnect(t, c, packet.PacketTooLarge)
	sub.ExpectNone(quiet)
}

func TestPublish5UnknownPacketIdentifierReasonCodes(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := client5(t, addr, "pid")
	// PUBREL for a packet identifier the broker does not hold: PUBCOMP
	// 0x92 (5.0 section 3.7.2.1).
	c.Send(&packet.Pubrel{PacketID: 42})
	if p := expect[*packet.Pubcomp](t, c); p.PacketID != 42 || p.ReasonCode != packet.PacketIdentifierNotFound {
		t.Fatalf("PUBCOMP %d %v, want 42 0x92", p.PacketID, p.ReasonCode)
	}
	// PUBREC for a delivery the broker never sent: PUBREL 0x92 (5.0
	// section 3.6.2.1).
	c.Send(&packet.Pubrec{PacketID: 43})
	if p := expect[*packet.Pubrel](t, c); p.PacketID != 43 || p.ReasonCode != packet.PacketIdentifierNotFound {
		t.Fatalf("PUBREL %d %v, want 43 0x92", p.PacketID, p.ReasonCode)
	}
	// The connection goes on.
	sub5(t, c, 1, "pid/#", 1, 0)
	pub5(t, c, "pid/x", 0, false, "ok", 0)
	expectPub(t, c, "pid/x", "ok")
}

func TestPublish5InboundTopicAliasZero(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := client5(t, addr, "alias0")
	c.Send(aliasPub("x/y", 0, "p"))
	// Topic Alias 0 is not permitted [MQTT-3.3.2-8]: DISCONNECT 0x94,
	// Topic Alias invalid (5.0 section 3.3.2.3.4).
	expectDisconnect(t, c, packet.TopicAliasInvalid)
}

func TestPublish5ExpiredInflightMessageStillResent(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b, addr := mqtttest.StartBroker(t, broker.Options{Now: clock.Now})
	sub, _ := session5(t, addr, "inflight", false, 60)
	sub5(t, sub, 1, "ie/#", 1, 0)
	pub := client5(t, addr, "pub")
	m := &packet.Publish{Topic: "ie/t", QoS: 1, PacketID: 1, Payload: []byte("started")}
	m.Properties.MessageExpiryInterval = 5
	m.Properties.Set(packet.PropMessageExpiryInterval)
	publish5(t, pub, m)
	first := expectPub(t, sub, "ie/t", "started") // not acknowledged
	dropConn5(t, b, sub, "inflight")
	clock.Advance(10 * time.Second)
	// Onward delivery had started: only a message whose delivery has not
	// started is deleted at expiry [MQTT-3.3.2-5]; an unacknowledged one is
	// resent with its packet identifier [MQTT-4.4.0-1].
	sub = resume5(t, addr, "inflight", 60, true)
	p := expectPub(t, sub, "ie/t", "started")
	if !p.Dup || p.PacketID != first.PacketID {
		t.Fatalf("resent PUBLISH dup %v id %d, want DUP with id %d [MQTT-4.4.0-1]", p.Dup, p.PacketID, first.PacketID)
	}
}
