package broker_test

// Conformance: MQTT 3.1.1 section 3.3.1.3 (RETAIN) and Petrel's rule that
// retained messages reach a new subscription completely, paced by flow
// control (DESIGN.md section 3).

import (
	"fmt"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestRetainedDeliveredToNewSubscriberWithRetainFlag(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	pub := connect(t, addr, "ret-pub", true)
	publish(t, pub, "ret/a", 1, true, "stored", 1)
	sub := connect(t, addr, "ret-sub", true)
	subscribe(t, sub, 1, "ret/a", 1)
	// Sent to a new subscription [MQTT-3.3.1-6] with RETAIN set [MQTT-3.3.1-8].
	if p := receive(t, sub, "ret/a", "stored", 1); !p.Retain {
		t.Fatalf("retained message delivered without the retain flag [MQTT-3.3.1-8]")
	}
	sub.ExpectNone(quiet)
}

func TestRetainFlagClearedOnLiveDelivery(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	sub := connect(t, addr, "live-sub", true)
	subscribe(t, sub, 1, "live/t", 1)
	pub := connect(t, addr, "live-pub", true)
	publish(t, pub, "live/t", 1, true, "now", 1)
	// A retained message sent to an existing subscription has RETAIN 0 [MQTT-3.3.1-9].
	if p := receive(t, sub, "live/t", "now", 1); p.Retain {
		t.Fatalf("live delivery has the retain flag set [MQTT-3.3.1-9]")
	}
}

func TestRetainedReplacedByLaterRetainedMessage(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	pub := connect(t, addr, "repl-pub", true)
	publish(t, pub, "repl/t", 1, true, "first", 1)
	publish(t, pub, "repl/t", 0, true, "second", 0) // a QoS 0 retained message replaces too [MQTT-3.3.1-7]
	publish(t, pub, "repl/t", 1, false, "not retained", 2)
	sub := connect(t, addr, "repl-sub", true)
	subscribe(t, sub, 1, "repl/t", 1)
	// Only the last retained message is kept [MQTT-3.3.1-5]; a non-retained
	// publish does not replace it [MQTT-3.3.1-12].
	p := receive(t, sub, "repl/t", "second", 0)
	if !p.Retain {
		t.Fatalf("retain flag not set")
	}
	sub.ExpectNone(quiet)
}

func TestRetainedClearedByEmptyPayload(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	pub := connect(t, addr, "clr-pub", true)
	publish(t, pub, "clr/t", 1, true, "x", 1)
	live := connect(t, addr, "clr-live", true)
	subscribe(t, live, 1, "clr/t", 1)
	receive(t, live, "clr/t", "x", 1)

	publish(t, pub, "clr/t", 1, true, "", 2)
	// The zero-byte retained message is delivered normally to current
	// subscribers [MQTT-3.3.1-10] ...
	if p := receive(t, live, "clr/t", "", 1); p.Retain {
		t.Fatalf("live delivery has the retain flag set [MQTT-3.3.1-9]")
	}
	// ... removes the retained message and is not stored itself [MQTT-3.3.1-10] [MQTT-3.3.1-11].
	sub := connect(t, addr, "clr-sub", true)
	subscribe(t, sub, 1, "clr/#", 1)
	sub.ExpectNone(quiet)
	if n := b.Stats().Retained; n != 0 {
		t.Fatalf("%d retained messages stored, want 0", n)
	}
	// Clearing a topic that holds nothing is harmless.
	publish(t, pub, "clr/none", 0, true, "", 0)
	publish(t, pub, "clr/t", 1, true, "back", 3)
	receive(t, live, "clr/t", "back", 1)
	sub2 := connect(t, addr, "clr-sub2", true)
	subscribe(t, sub2, 1, "clr/#", 1)
	receive(t, sub2, "clr/t", "back", 1)
	sub2.ExpectNone(quiet)
}

func TestRetainedQoSIsMinimumOfMessageAndSubscription(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	pub := connect(t, addr, "rq-pub", true)
	for q := byte(0); q <= 2; q++ {
		publish(t, pub, fmt.Sprintf("rq/%d", q), q, true, "m", uint16(q+1))
	}
	for sq := byte(0); sq <= 2; sq++ {
		sub := connect(t, addr, fmt.Sprintf("rq-sub-%d", sq), true)
		subscribe(t, sub, 1, "rq/+", sq)
		got := readPublishes(t, sub, 3, nil)
		for _, p := range got {
			var mq byte
			if _, err := fmt.Sscanf(p.Topic, "rq/%d", &mq); err != nil {
				t.Fatal(err)
			}
			if want := min(mq, sq); p.QoS != want || !p.Retain { // [MQTT-3.8.4-6] [MQTT-3.3.1-8]
				t.Fatalf("sub QoS %d: %s at QoS %d retain %v, want QoS %d retain true", sq, p.Topic, p.QoS, p.Retain, want)
			}
		}
		sub.ExpectNone(quiet)
	}
}

func TestRetainedMatchedByWildcardsAndResentOnResubscribe(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	pub := connect(t, addr, "rw-pub", true)
	for _, topic := range []string{"rw/a", "rw/b/c", "other/x", "$rw/hidden"} {
		publish(t, pub, topic, 1, true, topic, 1)
	}
	sub := connect(t, addr, "rw-sub", true)
	subscribe(t, sub, 1, "#", 1) // '#' does not match $-topics [MQTT-4.7.2-1]
	got := map[string]bool{}
	for _, p := range readPublishes(t, sub, 3, nil) {
		got[p.Topic] = true
	}
	for _, want := range []string{"rw/a", "rw/b/c", "other/x"} {
		if !got[want] {
			t.Fatalf("retained %q not delivered to '#'; got %v", want, got)
		}
	}
	sub.ExpectNone(quiet)
	// Subscribing again to the same filter replaces the subscription and
	// resends the retained messages [MQTT-3.8.4-3].
	subscribe(t, sub, 2, "rw/+", 1)
	receive(t, sub, "rw/a", "rw/a", 1)
	subscribe(t, sub, 3, "rw/+", 1)
	receive(t, sub, "rw/a", "rw/a", 1)
	sub.ExpectNone(quiet)
}

func TestRetainedManyDeliveredCompletelyWithSmallInflightWindow(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts broker.Options
		qos  byte
	}{
		{"QoS 1 MaxInflight 10", broker.Options{MaxInflight: 10}, 1},
		{"QoS 1 MaxInflight 10 QueueMessages 100", broker.Options{MaxInflight: 10, QueueMessages: 100}, 1},
		{"QoS 2 MaxInflight 10", broker.Options{MaxInflight: 10}, 2},
		{"QoS 0 QueueMessages 100", broker.Options{QueueMessages: 100}, 0},
	}
	const n = 5000
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := mqtttest.StartBroker(t, tc.opts)
			pub := connect(t, addr, "many-pub", true)
			// Published at QoS 2, so that each subscription QoS is the delivered one.
			var buf, rels []byte
			for i := range n {
				buf = append(buf, mustEncode(t, &packet.Publish{Topic: fmt.Sprintf("many/%d", i), QoS: 2, PacketID: uint16(i + 1), Retain: true, Payload: []byte("r")})...)
				rels = append(rels, mustEncode(t, &packet.Pubrel{PacketID: uint16(i + 1)})...)
			}
			pub.SendRaw(buf)
			for i := range n {
				if a := expect[*packet.Pubrec](t, pub); a.PacketID != uint16(i+1) {
					t.Fatalf("PUBREC %d, want %d", a.PacketID, i+1)
				}
			}
			pub.SendRaw(rels)
			for i := range n {
				if a := expect[*packet.Pubcomp](t, pub); a.PacketID != uint16(i+1) {
					t.Fatalf("PUBCOMP %d, want %d", a.PacketID, i+1)
				}
			}
			sub := connect(t, addr, "many-sub", true)
			subscribe(t, sub, 1, "many/+", tc.qos)
			got := readPublishes(t, sub, n, nil)
			seen := make(map[string]bool, n)
			for _, p := range got {
				if !p.Retain || p.QoS != tc.qos || seen[p.Topic] {
					t.Fatalf("%s: retain %v QoS %d duplicate %v", p.Topic, p.Retain, p.QoS, seen[p.Topic])
				}
				seen[p.Topic] = true
			}
			// Every retained message arrives, none silently truncated (DESIGN.md section 3).
			if len(seen) != n {
				t.Fatalf("%d distinct retained messages, want %d", len(seen), n)
			}
			sub.ExpectNone(quiet)
		})
	}
}
