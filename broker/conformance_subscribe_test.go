package broker_test

// Conformance: MQTT 3.1.1 sections 3.8-3.11 (SUBSCRIBE, SUBACK,
// UNSUBSCRIBE, UNSUBACK) and 4.7 (topic names, filters, wildcards, $-topics).

import (
	"fmt"
	"slices"
	"testing"

	"github.com/petrel-mqtt/petrel/packet"
)

func TestSubscribeSubackCodesPerFilterInOrder(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := connect(t, addr, "suback", true)
	codes := c.Subscribe(0x4242,
		packet.Subscription{Filter: "a/b", QoS: 2},
		packet.Subscription{Filter: "a/#", QoS: 0},
		packet.Subscription{Filter: "a/#/b", QoS: 1}, // invalid: '#' not last [MQTT-4.7.1-2]
		packet.Subscription{Filter: "+/x", QoS: 1},
		packet.Subscription{Filter: "a+", QoS: 1}, // invalid: '+' not a whole level [MQTT-4.7.1-3]
	)
	// One return code per filter, in order, with the SUBSCRIBE's packet id
	// (checked by Subscribe) [MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-5]; an
	// invalid filter gets 0x80 [MQTT-3.9.3-2].
	want := []packet.ReasonCode{2, 0, 0x80, 1, 0x80}
	for i := range want {
		if i >= len(codes) || (codes[i] >= 0x80) != (want[i] >= 0x80) || (want[i] < 0x80 && codes[i] != want[i]) {
			t.Fatalf("SUBACK codes %v, want %v", codes, want)
		}
	}
	if len(codes) != len(want) {
		t.Fatalf("SUBACK has %d codes, want %d", len(codes), len(want))
	}
	// The valid filters of the packet are in force.
	pub := connect(t, addr, "suback-pub", true)
	publish(t, pub, "q/x", 1, false, "plus", 1)
	receive(t, c, "q/x", "plus", 1)
}

func TestSubscribeRawSubackBytes(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := connect(t, addr, "suback-raw", true)
	c.Send(&packet.Subscribe{PacketID: 0x0102, Subscriptions: []packet.Subscription{{Filter: "x", QoS: 1}, {Filter: "y", QoS: 2}}})
	raw := make([]byte, 6)
	if _, err := readFull(c, raw); err != nil {
		t.Fatalf("read SUBACK: %v", err)
	}
	// SUBACK: type 9, flags 0, remaining length 4, packet id, codes [MQTT-3.8.4-1].
	if want := []byte{0x90, 0x04, 0x01, 0x02, 0x01, 0x02}; !slices.Equal(raw, want) {
		t.Fatalf("SUBACK bytes % X, want % X", raw, want)
	}
}

func TestSubscribeWildcardMatching(t *testing.T) {
	t.Parallel()
	// Every filter is tried against every topic; want lists the topics the
	// filter matches (3.1.1 section 4.7.1, 4.7.2).
	topics := []string{
		"sport/tennis/player1",
		"sport/tennis/player1/ranking",
		"sport/tennis/player1/score/wimbledon",
		"sport",
		"sport/",
		"sport/tennis",
		"Sport/tennis",
		"/finance",
		"finance",
		"/",
		"a//b",
		"$foo/bar",
		"$foo",
	}
	cases := []struct {
		filter string
		want   []string
		clause string
	}{
		{"sport/tennis/player1/#", []string{"sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon"}, "[MQTT-4.7.1-2]"},
		{"sport/#", []string{"sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon", "sport", "sport/", "sport/tennis"}, "'#' matches the parent level [MQTT-4.7.1-2]"},
		{"#", []string{"sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon", "sport", "sport/", "sport/tennis", "Sport/tennis", "/finance", "finance", "/", "a//b"}, "'#' matches all but $-topics [MQTT-4.7.2-1]"},
		{"sport/tennis/+", []string{"sport/tennis/player1"}, "[MQTT-4.7.1-3]"},
		{"sport/+", []string{"sport/", "sport/tennis"}, "'+' matches one level, also empty"},
		{"+", []string{"sport", "finance"}, "'+' matches one level only, not $-topics [MQTT-4.7.2-1]"},
		{"+/+", []string{"sport/", "sport/tennis", "Sport/tennis", "/finance", "/"}, "[MQTT-4.7.1-3]"},
		{"/+", []string{"/finance", "/"}, "[MQTT-4.7.1-3]"},
		{"+/tennis/#", []string{"sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon", "sport/tennis", "Sport/tennis"}, "'+' and '#' together"},
		{"a/+/b", []string{"a//b"}, "'+' matches an empty level"},
		{"sport/tennis", []string{"sport/tennis"}, "exact, case sensitive [MQTT-4.7.3-4]"},
		{"+/bar", nil, "'+' first level does not match $-topics [MQTT-4.7.2-1]"},
		{"+/#", []string{"sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon", "sport", "sport/", "sport/tennis", "Sport/tennis", "/finance", "finance", "/", "a//b"}, "[MQTT-4.7.2-1]"},
		{"$foo/#", []string{"$foo/bar", "$foo"}, "a filter starting with '$' matches $-topics"},
		{"$foo/+", []string{"$foo/bar"}, "a filter starting with '$' matches $-topics"},
	}
	for i, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			t.Parallel()
			_, addr := startBroker(t) // one broker per filter: "#" would see the other cases
			sub := connect(t, addr, fmt.Sprintf("wild-sub-%d", i), true)
			barrier := fmt.Sprintf("barrier/%d", i)
			sub.Subscribe(1, packet.Subscription{Filter: tc.filter, QoS: 1}, packet.Subscription{Filter: barrier, QoS: 1})
			pub := connect(t, addr, fmt.Sprintf("wild-pub-%d", i), true)
			for j, topic := range topics {
				publish(t, pub, topic, 1, false, "m", uint16(j+1))
			}
			publish(t, pub, barrier, 1, false, "end", 999)
			got := collectUntil(t, sub, barrier)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("filter %q matched %q, want %q %s", tc.filter, got, tc.want, tc.clause)
			}
		})
	}
}

func TestSubscribeOverlappingDeliversOnceAtMaxQoS(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "overlap-sub", true)
	sub.Subscribe(1,
		packet.Subscription{Filter: "o/#", QoS: 0},
		packet.Subscription{Filter: "o/+", QoS: 2},
		packet.Subscription{Filter: "o/a", QoS: 1},
		packet.Subscription{Filter: "#", QoS: 1},
	)
	pub := connect(t, addr, "overlap-pub", true)
	publish(t, pub, "o/a", 2, false, "x", 1)
	// One copy, at the highest QoS of the matching subscriptions [MQTT-3.3.5-1].
	receive(t, sub, "o/a", "x", 2)
	sub.ExpectNone(quiet)

	publish(t, pub, "o/b/c", 2, false, "y", 2) // matches o/# (0) and # (1)
	receive(t, sub, "o/b/c", "y", 1)
	sub.ExpectNone(quiet)
}

func TestSubscribeReplacesExistingSubscription(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "replace-sub", true)
	subscribe(t, sub, 1, "rep/t", 2)
	subscribe(t, sub, 2, "rep/t", 0) // same filter: replaces [MQTT-3.8.4-3]
	pub := connect(t, addr, "replace-pub", true)
	publish(t, pub, "rep/t", 2, false, "x", 1)
	receive(t, sub, "rep/t", "x", 0) // the new QoS applies, and only one subscription exists
	sub.ExpectNone(quiet)

	subscribe(t, sub, 3, "rep/t", 1)
	publish(t, pub, "rep/t", 2, false, "y", 2)
	receive(t, sub, "rep/t", "y", 1)
	sub.ExpectNone(quiet)
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "unsub-sub", true)
	sub.Subscribe(1, packet.Subscription{Filter: "u/a", QoS: 1}, packet.Subscription{Filter: "u/+", QoS: 1}, packet.Subscription{Filter: "u/b", QoS: 1})
	pub := connect(t, addr, "unsub-pub", true)

	sub.Send(&packet.Unsubscribe{PacketID: 0x0A0B, Filters: []string{"u/a", "u/+"}})
	if a := expect[*packet.Unsuback](t, sub); a.PacketID != 0x0A0B { // [MQTT-3.10.4-4]
		t.Fatalf("UNSUBACK packet id %#x, want 0x0A0B", a.PacketID)
	}
	publish(t, pub, "u/a", 1, false, "gone", 1) // [MQTT-3.10.4-1] deleted: no more delivery
	publish(t, pub, "u/b", 1, false, "kept", 2) // other subscriptions unaffected
	receive(t, sub, "u/b", "kept", 1)
	sub.ExpectNone(quiet)
}

func TestUnsubscribeMatchesFilterExactly(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "unsub-exact", true)
	subscribe(t, sub, 1, "ux/+", 1)
	// "ux/a" is not the filter "ux/+": nothing is unsubscribed (filters are
	// compared character by character [MQTT-3.10.4-1]).
	sub.Send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"ux/a"}})
	expect[*packet.Unsuback](t, sub)
	pub := connect(t, addr, "unsub-exact-pub", true)
	publish(t, pub, "ux/a", 1, false, "still", 1)
	receive(t, sub, "ux/a", "still", 1)
}

func TestUnsubscribeUnknownFilterStillAcknowledged(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := connect(t, addr, "unsub-unknown", true)
	for _, pid := range []uint16{1, 0xFFFF} {
		c.Send(&packet.Unsubscribe{PacketID: pid, Filters: []string{"never/subscribed", "nor/#"}})
		raw := make([]byte, 4)
		if _, err := readFull(c, raw); err != nil {
			t.Fatalf("read UNSUBACK: %v", err)
		}
		// UNSUBACK even when nothing was deleted [MQTT-3.10.4-5]; 3.1.1 form:
		// B0 02 and the packet id [MQTT-3.10.4-4].
		if want := []byte{0xB0, 0x02, byte(pid >> 8), byte(pid)}; !slices.Equal(raw, want) {
			t.Fatalf("UNSUBACK bytes % X, want % X", raw, want)
		}
	}
}

func TestSubscribeDollarTopicsNotMatchedByLeadingWildcards(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	all := connect(t, addr, "dollar-all", true)
	all.Subscribe(1, packet.Subscription{Filter: "#", QoS: 1}, packet.Subscription{Filter: "+/status", QoS: 1}, packet.Subscription{Filter: "+", QoS: 1})
	dollar := connect(t, addr, "dollar-own", true)
	subscribe(t, dollar, 1, "$internal/#", 1)
	pub := connect(t, addr, "dollar-pub", true)
	publish(t, pub, "$internal/status", 1, false, "d", 1)
	publish(t, pub, "$internal", 1, false, "d", 2)
	// A filter starting with a wildcard does not match a topic starting
	// with '$' [MQTT-4.7.2-1] ...
	publish(t, pub, "plain/status", 1, false, "p", 3)
	receive(t, all, "plain/status", "p", 1)
	all.ExpectNone(quiet)
	// ... while a filter naming the '$' level does.
	receive(t, dollar, "$internal/status", "d", 1)
	receive(t, dollar, "$internal", "d", 1)
}

func TestSubscribeInvalidPacketsClose(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	cases := []struct {
		name   string
		raw    []byte
		clause string
	}{
		{"no filter", rawPacket(0x82, []byte{0, 1}), "[MQTT-3.8.3-3]"},
		{"wrong fixed header flags", rawPacket(0x80, append(appendStr([]byte{0, 1}, "a"), 0)), "[MQTT-3.8.1-1]"},
		{"QoS 3", rawPacket(0x82, append(appendStr([]byte{0, 1}, "a"), 3)), "[MQTT-3.8.3-4]"},
		{"reserved option bits", rawPacket(0x82, append(appendStr([]byte{0, 1}, "a"), 0x04)), "[MQTT-3.8.3-4]"},
		{"packet id 0", rawPacket(0x82, append(appendStr([]byte{0, 0}, "a"), 0)), "[MQTT-2.3.1-1]"},
		{"empty filter", rawPacket(0x82, append(appendStr([]byte{0, 1}, ""), 0)), "[MQTT-4.7.3-1]"},
		{"unsubscribe no filter", rawPacket(0xA2, []byte{0, 1}), "[MQTT-3.10.3-2]"},
		{"unsubscribe wrong flags", rawPacket(0xA0, appendStr([]byte{0, 1}, "a")), "[MQTT-3.10.1-1]"},
	}
	t.Run("group", func(t *testing.T) {
		for i, tc := range cases {
			t.Run(tc.name+" "+tc.clause, func(t *testing.T) {
				t.Parallel()
				c := connect(t, addr, fmt.Sprintf("badsub-%d", i), true)
				c.SendRaw(tc.raw)
				expectClosedSilently(t, c)
			})
		}
	})
	roundTrip(t, addr)
}

func TestSubscribeManyFiltersInOnePacket(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := connect(t, addr, "many-filters", true)
	var subs []packet.Subscription
	for i := range 200 {
		subs = append(subs, packet.Subscription{Filter: fmt.Sprintf("mf/%d", i), QoS: byte(i % 3)})
	}
	codes := c.Subscribe(9, subs...)
	if len(codes) != len(subs) { // [MQTT-3.8.4-5]
		t.Fatalf("%d codes for %d filters", len(codes), len(subs))
	}
	for i, code := range codes {
		if code != packet.ReasonCode(i%3) {
			t.Fatalf("code %d is %v, want %d", i, code, i%3)
		}
	}
	pub := connect(t, addr, "many-filters-pub", true)
	publish(t, pub, "mf/199", 2, false, "last", 1)
	receive(t, c, "mf/199", "last", 1)
}
