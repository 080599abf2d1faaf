package broker_test

// Conformance: MQTT 5.0 sections 3.8.3.1 (subscription options: no local,
// retain as published, retain handling), 3.8.2.1.2 and 3.3.4
// (subscription identifiers), 3.9.3 and 3.11.3 (SUBACK and UNSUBACK
// reason codes) and 4.8.2 (shared subscriptions).

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestSubscribe5SubscriptionIdentifiers(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := client5(t, addr, "sid")
	sub5(t, c, 1, "si/+", 0, 5)
	sub5(t, c, 2, "si/a", 1, 9)
	sub5(t, c, 3, "si/#", 0, 0)
	pub := client5(t, addr, "pub")

	cases := []struct {
		topic string
		ids   []uint32
		qos   byte
	}{
		// Overlapping subscriptions: one PUBLISH carrying every matching
		// subscription's identifier [MQTT-3.3.4-3] [MQTT-3.3.4-4], at the
		// highest granted QoS [MQTT-3.3.4-2].
		{"si/a", []uint32{5, 9}, 1},
		// One matching subscription with an identifier: that one [MQTT-3.3.4-3].
		{"si/b", []uint32{5}, 0},
		// Only the subscription without an identifier matches: none.
		{"si/b/c", nil, 0},
	}
	for i, tc := range cases {
		pub5(t, pub, tc.topic, 1, false, fmt.Sprint(i), uint16(i+1))
		p := expectPub(t, c, tc.topic, fmt.Sprint(i))
		if got := sortedIDs(p); !slices.Equal(got, tc.ids) {
			t.Fatalf("%s: subscription identifiers %v, want %v [MQTT-3.3.4-4]", tc.topic, got, tc.ids)
		}
		if p.QoS != tc.qos {
			t.Fatalf("%s: QoS %d, want %d [MQTT-3.3.4-2]", tc.topic, p.QoS, tc.qos)
		}
		ackPublish(t, c, p)
		c.ExpectNone(quiet) // one delivery for overlapping subscriptions
	}

	// Subscribing again replaces the identifier (5.0 section 3.8.2.1.2).
	sub5(t, c, 4, "si/+", 0, 6)
	pub5(t, pub, "si/b", 1, false, "new", 10)
	if p := expectPub(t, c, "si/b", "new"); !slices.Equal(sortedIDs(p), []uint32{6}) {
		t.Fatalf("after re-subscribing: identifiers %v, want [6]", p.Properties.SubscriptionIdentifiers)
	}
	// A subscription made without one loses it.
	sub5(t, c, 5, "si/+", 0, 0)
	pub5(t, pub, "si/b", 1, false, "none", 11)
	if p := expectPub(t, c, "si/b", "none"); len(p.Properties.SubscriptionIdentifiers) != 0 {
		t.Fatalf("after re-subscribing without identifier: identifiers %v, want none", p.Properties.SubscriptionIdentifiers)
	}
}

func TestSubscribe5SubscriptionIdentifierAppliesToEveryFilterAndRetained(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	pub := client5(t, addr, "pub")
	pub5(t, pub, "sr/retained", 1, true, "kept", 1)
	c := client5(t, addr, "sid")
	codes := subscribe5(t, c, 1, 77, packet.Subscription{Filter: "sr/retained", QoS: 1}, packet.Subscription{Filter: "sx/#", QoS: 1})
	if codes[0] != 1 || codes[1] != 1 {
		t.Fatalf("SUBACK %v", codes)
	}
	// The retained message sent for the subscription carries its identifier.
	p := expectPub(t, c, "sr/retained", "kept")
	ackPublish(t, c, p)
	if !p.Retain || !slices.Equal(sortedIDs(p), []uint32{77}) {
		t.Fatalf("retained delivery: retain %v identifiers %v, want retained with [77]", p.Retain, p.Properties.SubscriptionIdentifiers)
	}
	// The identifier of a SUBSCRIBE goes with each of its filters.
	pub5(t, pub, "sx/1", 1, false, "x", 2)
	if p := expectPub(t, c, "sx/1", "x"); !slices.Equal(sortedIDs(p), []uint32{77}) {
		t.Fatalf("second filter of the SUBSCRIBE: identifiers %v, want [77]", p.Properties.SubscriptionIdentifiers)
	}
}

func TestSubscribe5SubscriptionIdentifierZeroIsProtocolError(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := client5(t, addr, "sid0")
	// SUBSCRIBE, packet id 1, properties {Subscription Identifier 0},
	// filter "a" with QoS 0: a Subscription Identifier of 0 is a protocol
	// error (5.0 section 3.8.2.1.2).
	body := []byte{0, 1, 2, byte(packet.PropSubscriptionIdentifier), 0}
	body = append(appendStr(body, "a"), 0)
	c.SendRaw(rawPacket(0x82, body))
	expectDisconnect(t, c, packet.ProtocolError)
}

func TestSubscribe5NoLocal(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := client5(t, addr, "nl")
	if codes := subscribe5(t, c, 1, 0, packet.Subscription{Filter: "nl/t", QoS: 1, NoLocal: true}); codes[0] != 1 {
		t.Fatalf("SUBACK %v", codes)
	}
	// The client's own messages are not sent back to it [MQTT-3.8.3-3]...
	pub5(t, c, "nl/t", 1, false, "own", 1)
	c.ExpectNone(quiet)
	// ...other clients' are.
	other := client5(t, addr, "other")
	pub5(t, other, "nl/t", 1, false, "theirs", 1)
	p := expectPub(t, c, "nl/t", "theirs")
	ackPublish(t, c, p)

	// An overlapping subscription without No Local still delivers the
	// client's own message, once.
	sub5(t, c, 2, "nl/#", 1, 0)
	pub5(t, c, "nl/t", 1, false, "own again", 2)
	p = expectPub(t, c, "nl/t", "own again")
	ackPublish(t, c, p)
	c.ExpectNone(quiet)
}

func TestSubscribe5RetainAsPublished(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	rap := client5(t, addr, "rap")
	subscribe5(t, rap, 1, 0, packet.Subscription{Filter: "rap/#", QoS: 1, RetainAsPublished: true})
	plain := client5(t, addr, "plain")
	subscribe5(t, plain, 1, 0, packet.Subscription{Filter: "rap/#", QoS: 1})
	pub := client5(t, addr, "pub")
	pub5(t, pub, "rap/r", 1, true, "r", 1)
	pub5(t, pub, "rap/n", 1, false, "n", 2)
	// Retain As Published 1: the RETAIN flag as published [MQTT-3.3.1-13];
	// 0: RETAIN 0 on a live delivery [MQTT-3.3.1-12].
	for _, w := range []struct {
		c      *mqtttest.Client
		topic  string
		retain bool
	}{{rap, "rap/r", true}, {rap, "rap/n", false}, {plain, "rap/r", false}, {plain, "rap/n", false}} {
		p := expectPub(t, w.c, w.topic, w.topic[len("rap/"):])
		ackPublish(t, w.c, p)
		if p.Retain != w.retain {
			t.Fatalf("%s: RETAIN %v, want %v [MQTT-3.3.1-12] [MQTT-3.3.1-13]", w.topic, p.Retain, w.retain)
		}
	}
}

func TestSubscribe5RetainHandling(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	pub := client5(t, addr, "pub")
	pub5(t, pub, "rh/x", 1, true, "retained", 1)
	cases := []struct {
		handling     byte
		first, again bool // retained message sent on the first subscribe, on the repeat
		clause       string
	}{
		{0, true, true, "[MQTT-3.3.1-9]"},
		{1, true, false, "[MQTT-3.3.1-10]"},
		{2, false, false, "[MQTT-3.3.1-11]"},
	}
	for _, tc := range cases {
		c := client5(t, addr, fmt.Sprintf("rh%d", tc.handling))
		for i, want := range []bool{tc.first, tc.again} {
			subscribe5(t, c, uint16(i+1), 0, packet.Subscription{Filter: "rh/#", QoS: 1, RetainHandling: tc.handling})
			if want {
				p := c.ExpectPublish()
				if p.Topic != "rh/x" {
					t.Fatalf("retain handling %d, subscribe %d: got %q, want the retained message %s", tc.handling, i+1, p.Topic, tc.clause)
				}
				ackPublish(t, c, p)
				if !p.Retain {
					t.Fatalf("retained message sent on subscribe without RETAIN")
				}
			} else {
				expectNothing(t, c, quiet, fmt.Sprintf("retain handling %d, subscribe %d %s", tc.handling, i+1, tc.clause))
			}
		}
		// Whatever the handling, new messages flow.
		pub5(t, pub, "rh/live", 1, false, "live", 2)
		ackPublish(t, c, expectPub(t, c, "rh/live", "live"))
	}
}

func TestSubscribe5SubackAndUnsubackReasonCodes(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := client5(t, addr, "codes")
	codes := subscribe5(t, c, 1, 0,
		packet.Subscription{Filter: "ok/#", QoS: 2},
		packet.Subscription{Filter: "a/#/b", QoS: 1},
		packet.Subscription{Filter: "a+", QoS: 1},
		packet.Subscription{Filter: "$share/g", QoS: 1},
		packet.Subscription{Filter: "$share/g+/x", QoS: 1},
		packet.Subscription{Filter: "ok2", QoS: 0},
	)
	// A code per filter, in order [MQTT-3.9.3-1]; an invalid filter gets
	// 0x8F, Topic Filter invalid, the others are granted (5.0 section 3.9.3).
	want := []packet.ReasonCode{2, packet.TopicFilterInvalid, packet.TopicFilterInvalid, packet.TopicFilterInvalid, packet.TopicFilterInvalid, 0}
	if !slices.Equal(codes, want) {
		t.Fatalf("SUBACK %v, want %v", codes, want)
	}

	c.Send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"ok/#", "never/subscribed", "ok2"}})
	u := expect[*packet.Unsuback](t, c)
	// UNSUBACK 0x11 for a filter without a subscription, 0x00 for the
	// others, in order (5.0 section 3.11.3) [MQTT-3.11.3-1].
	if want := []packet.ReasonCode{packet.Success, packet.NoSubscriptionExisted, packet.Success}; u.PacketID != 2 || !slices.Equal(u.ReasonCodes, want) {
		t.Fatalf("UNSUBACK %d %v, want 2 %v", u.PacketID, u.ReasonCodes, want)
	}
}

// denySecret refuses subscriptions to secret/... and grants at most QoS 1
// elsewhere.
type denySecret struct{ broker.AllowAll }

func (denySecret) CanSubscribe(_ *broker.Identity, filter string, qos byte) broker.SubscribeDecision {
	if strings.HasPrefix(filter, "secret/") {
		return broker.SubscribeDecision{}
	}
	return broker.SubscribeDecision{OK: true, MaxQoS: min(qos, 1)}
}

func TestSubscribe5NotAuthorized(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{Authorizer: denySecret{}})
	c := client5(t, addr, "authz")
	codes := subscribe5(t, c, 1, 0,
		packet.Subscription{Filter: "open/#", QoS: 2},
		packet.Subscription{Filter: "secret/#", QoS: 1},
	)
	// 0x87 Not authorized for the refused filter; the other is granted at
	// the QoS the authorizer allows (5.0 section 3.9.3).
	if want := []packet.ReasonCode{1, packet.NotAuthorized}; !slices.Equal(codes, want) {
		t.Fatalf("SUBACK %v, want %v", codes, want)
	}
	pub := client5(t, addr, "pub")
	pub5(t, pub, "secret/x", 1, false, "s", 1)
	c.ExpectNone(quiet)
}

func TestSubscribe5SharedRoundRobin(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	m1 := client5(t, addr, "m1")
	m2 := client5(t, addr, "m2")
	other := client5(t, addr, "other-group")
	plain := client5(t, addr, "plain")
	sub5(t, m1, 1, "$share/g/sh/#", 1, 0)
	sub5(t, m2, 1, "$share/g/sh/#", 1, 0)
	sub5(t, other, 1, "$share/h/sh/#", 1, 0)
	sub5(t, plain, 1, "sh/#", 1, 0)
	pub := client5(t, addr, "pub")
	const n = 6
	for i := range n {
		pub5(t, pub, "sh/t", 1, false, fmt.Sprint(i), uint16(i+1))
	}
	// Each message goes to one member of the group (5.0 section 4.8.2),
	// alternating between the two members (round robin).
	got := map[*mqtttest.Client][]string{}
	for _, m := range []*mqtttest.Client{m1, m2} {
		for range n / 2 {
			p := m.ExpectPublish()
			ackPublish(t, m, p)
			got[m] = append(got[m], string(p.Payload))
		}
		m.ExpectNone(quiet)
	}
	all := append(slices.Clone(got[m1]), got[m2]...)
	slices.Sort(all)
	if want := []string{"0", "1", "2", "3", "4", "5"}; !slices.Equal(all, want) {
		t.Fatalf("group g got %v between its members, want each of %v once", all, want)
	}
	even := []string{"0", "2", "4"}
	odd := []string{"1", "3", "5"}
	if !(slices.Equal(got[m1], even) && slices.Equal(got[m2], odd)) && !(slices.Equal(got[m1], odd) && slices.Equal(got[m2], even)) {
		t.Fatalf("members got %v and %v, want alternating messages (round robin)", got[m1], got[m2])
	}
	// Another group and a plain subscriber each get every message.
	for _, c := range []*mqtttest.Client{other, plain} {
		for i := range n {
			ackPublish(t, c, expectPub(t, c, "sh/t", fmt.Sprint(i)))
		}
	}
}

func TestSubscribe5SharedMemberLeaves(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	m1 := client5(t, addr, "m1")
	m2 := client5(t, addr, "m2")
	sub5(t, m1, 1, "$share/g/sl/t", 1, 0)
	sub5(t, m2, 1, "$share/g/sl/t", 1, 0)
	m1.Send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"$share/g/sl/t"}})
	if u := expect[*packet.Unsuback](t, m1); !slices.Equal(u.ReasonCodes, []packet.ReasonCode{packet.Success}) {
		t.Fatalf("UNSUBACK %v", u.ReasonCodes)
	}
	pub := client5(t, addr, "pub")
	for i := range 4 {
		pub5(t, pub, "sl/t", 1, false, fmt.Sprint(i), uint16(i+1))
	}
	// The member that left gets nothing; the remaining one everything.
	for i := range 4 {
		ackPublish(t, m2, expectPub(t, m2, "sl/t", fmt.Sprint(i)))
	}
	m1.ExpectNone(quiet)
}

func TestSubscribe5SharedNoRetained(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	pub := client5(t, addr, "pub")
	pub5(t, pub, "sr/x", 1, true, "retained", 1)
	c := client5(t, addr, "member")
	sub5(t, c, 1, "$share/g/sr/#", 1, 0)
	// Retained messages are not sent to a shared subscription (5.0
	// section 4.8.2).
	c.ExpectNone(quiet)
	// Live messages are, with RETAIN as the subscription says.
	pub5(t, pub, "sr/x", 1, false, "live", 2)
	ackPublish(t, c, expectPub(t, c, "sr/x", "live"))
}

func TestSubscribe5SharedNoLocalIsProtocolError(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := client5(t, addr, "nlshare")
	c.Send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "$share/g/x", QoS: 1, NoLocal: true}}})
	// No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
	expectDisconnect(t, c, packet.ProtocolError)
}

func TestSubscribe5SharedRedeliveryWhenMemberDisconnects(t *testing.T) {
	t.Parallel()
	for _, end := range []string{"network close", "disconnect"} {
		t.Run(end, func(t *testing.T) {
			t.Parallel()
			b, addr := mqtttest.StartBroker(t, broker.Options{})
			m1 := client5(t, addr, "m1")
			m2 := client5(t, addr, "m2")
			sub5(t, m1, 1, "$share/g/rd/t", 1, 0)
			sub5(t, m2, 1, "$share/g/rd/t", 1, 0)
			pub := client5(t, addr, "pub")
			for i := range 4 {
				pub5(t, pub, "rd/t", 1, false, fmt.Sprint(i), uint16(i+1))
			}
			// m1 receives its share and acknowledges none of it; m2
			// acknowledges its own.
			var unacked, acked []string
			for range 2 {
				unacked = append(unacked, string(m1.ExpectPublish().Payload))
				p := m2.ExpectPublish()
				ackPublish(t, m2, p)
				acked = append(acked, string(p.Payload))
			}
			if end == "disconnect" {
				disconnect5(t, b, m1, "m1", packet.Success, nil)
			} else {
				dropConn5(t, b, m1, "m1")
			}
			// m1's session ended with its QoS 1 messages unacknowledged:
			// they go to the other member (5.0 section 4.8.2).
			var again []string
			for range 2 {
				p := m2.ExpectPublish()
				ackPublish(t, m2, p)
				again = append(again, string(p.Payload))
			}
			slices.Sort(unacked)
			slices.Sort(again)
			if !slices.Equal(unacked, again) {
				t.Fatalf("m2 got %v after m1 left, want m1's unacknowledged %v (m2 had %v)", again, unacked, acked)
			}
			m2.ExpectNone(quiet)
		})
	}
}

func TestSubscribe5SharedRedeliveryToWaitingMember(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	m1 := client5(t, addr, "m1")
	sub5(t, m1, 1, "$share/g/rw/t", 1, 0)
	pub := client5(t, addr, "pub")
	pub5(t, pub, "rw/t", 1, false, "only", 1)
	if p := m1.ExpectPublish(); string(p.Payload) != "only" {
		t.Fatalf("got %q", p.Payload)
	}
	// A second member joins; then the first leaves with the message
	// unacknowledged: the newcomer gets it.
	m2 := client5(t, addr, "m2")
	sub5(t, m2, 1, "$share/g/rw/t", 1, 0)
	dropConn5(t, b, m1, "m1")
	p := expectPub(t, m2, "rw/t", "only")
	ackPublish(t, m2, p)
	m2.ExpectNone(quiet)
}

func TestSubscribe5SharedSubscriptionIdentifierAndQoS(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	m := client5(t, addr, "member")
	sub5(t, m, 1, "$share/g/sq/#", 0, 33)
	pub := client5(t, addr, "pub")
	pub5(t, pub, "sq/x", 1, false, "x", 1)
	p := expectPub(t, m, "sq/x", "x")
	// The member's granted QoS applies [MQTT-4.8.2-3] and the delivery
	// carries its subscription identifier [MQTT-3.3.4-3].
	if p.QoS != 0 {
		t.Fatalf("QoS %d through a shared subscription granted QoS 0 [MQTT-4.8.2-3]", p.QoS)
	}
	if !slices.Equal(sortedIDs(p), []uint32{33}) {
		t.Fatalf("subscription identifiers %v, want [33]", p.Properties.SubscriptionIdentifiers)
	}
	// Unsubscribing a share group the client is not in: 0x11.
	m.Send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"$share/other/sq/#"}})
	if u := expect[*packet.Unsuback](t, m); !slices.Equal(u.ReasonCodes, []packet.ReasonCode{packet.NoSubscriptionExisted}) {
		t.Fatalf("UNSUBACK %v, want [0x11]", u.ReasonCodes)
	}
}
