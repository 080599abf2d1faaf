package broker_test

// Conformance: MQTT 3.1.1 section 3.1.2.5-3.1.2.7 (will flag, will QoS,
// will retain) and 3.14.4 (DISCONNECT discards the will).

import (
	"fmt"
	"testing"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// connectWithWill connects id (clean session) with the given will and
// keepalive.
func connectWithWill(t *testing.T, addr string, v packet.Version, id string, keepAlive uint16, w *packet.Will) *mqtttest.Client {
	t.Helper()
	c := mqtttest.Dial(t, addr, v)
	if ack := c.Connect(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: keepAlive, Will: w}); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	return c
}

func TestWillPublishedWhenConnectionEndsAbnormally(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		keepAlive uint16
		end       func(t *testing.T, c *mqtttest.Client)
	}{
		{"network close", 60, func(t *testing.T, c *mqtttest.Client) {
			if err := c.Conn.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		{"keepalive timeout", 1, func(t *testing.T, c *mqtttest.Client) {}}, // [MQTT-3.1.2-24]
		{"protocol error: malformed packet", 60, func(t *testing.T, c *mqtttest.Client) {
			c.SendRaw([]byte{0x00, 0x00}) // reserved packet type [MQTT-4.8.0-1]
		}},
		{"protocol error: second CONNECT", 60, func(t *testing.T, c *mqtttest.Client) {
			c.Send(&packet.Connect{ClientID: "again", CleanStart: true}) // [MQTT-3.1.0-2]
		}},
		{"protocol error: wildcard topic", 60, func(t *testing.T, c *mqtttest.Client) {
			c.SendRaw(rawPacket(0x30, append(appendStr(nil, "a/#"), 'x'))) // [MQTT-3.3.2-2]
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := startBroker(t)
			watcher := connect(t, addr, "watcher", true)
			subscribe(t, watcher, 1, "will/#", 1)
			topic := fmt.Sprintf("will/%d", i)
			c := connectWithWill(t, addr, packet.V311, "dying", tc.keepAlive, &packet.Will{Topic: topic, Payload: []byte("gone"), QoS: 1})
			tc.end(t, c)
			// The will is published when the connection ends without
			// DISCONNECT [MQTT-3.1.2-8], at its QoS, live (RETAIN 0).
			if p := receive(t, watcher, topic, "gone", 1); p.Retain {
				t.Fatalf("will delivered with retain flag to a live subscription [MQTT-3.3.1-9]")
			}
			watcher.ExpectNone(quiet) // exactly once
		})
	}
}

func TestWillNotPublishedAfterDisconnect(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	watcher := connect(t, addr, "watcher", true)
	subscribe(t, watcher, 1, "will/#", 1)
	c := connectWithWill(t, addr, packet.V311, "polite", 60, &packet.Will{Topic: "will/polite", Payload: []byte("gone"), QoS: 1, Retain: true})
	disconnect(t, b, c, "polite")
	// DISCONNECT discards the will [MQTT-3.14.4-3] [MQTT-3.1.2-10].
	watcher.ExpectNone(3 * quiet)
	if n := b.Stats().Retained; n != 0 {
		t.Fatalf("%d retained messages, want 0: the will was retained", n)
	}
}

func TestWillRetainHonoured(t *testing.T) {
	t.Parallel()
	for _, retain := range []bool{true, false} {
		t.Run(fmt.Sprintf("retain=%v", retain), func(t *testing.T) {
			t.Parallel()
			b, addr := startBroker(t)
			c := connectWithWill(t, addr, packet.V311, "ret-will", 60, &packet.Will{Topic: "wr/t", Payload: []byte("last"), QoS: 1, Retain: retain})
			dropConn(t, b, c, "ret-will")
			sub := connect(t, addr, "wr-sub", true)
			subscribe(t, sub, 1, "wr/t", 1)
			if !retain {
				sub.ExpectNone(quiet) // will retain 0: not retained [MQTT-3.1.2-16]
				return
			}
			// Will retain 1: published as a retained message [MQTT-3.1.2-17].
			if p := receive(t, sub, "wr/t", "last", 1); !p.Retain {
				t.Fatalf("retained will delivered without the retain flag [MQTT-3.3.1-8]")
			}
		})
	}
}

func TestWillQoS(t *testing.T) {
	t.Parallel()
	for willQoS := byte(0); willQoS <= 2; willQoS++ {
		for subQoS := byte(0); subQoS <= 2; subQoS++ {
			t.Run(fmt.Sprintf("will%d-sub%d", willQoS, subQoS), func(t *testing.T) {
				t.Parallel()
				_, addr := startBroker(t)
				sub := connect(t, addr, "wq-sub", true)
				subscribe(t, sub, 1, "wq", subQoS)
				c := connectWithWill(t, addr, packet.V311, "wq", 60, &packet.Will{Topic: "wq", Payload: []byte("w"), QoS: willQoS})
				if err := c.Conn.Close(); err != nil {
					t.Fatal(err)
				}
				// Published at the will QoS [MQTT-3.1.2-14], delivered at the minimum [MQTT-3.8.4-6].
				receive(t, sub, "wq", "w", min(willQoS, subQoS))
			})
		}
	}
}

func TestWillNotPublishedOnTakeover(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	watcher := connect(t, addr, "watcher", true)
	subscribe(t, watcher, 1, "will/#", 1)
	old := connectWithWill(t, addr, packet.V311, "taken", 60, &packet.Will{Topic: "will/old", Payload: []byte("old"), QoS: 1})
	// The new connection's will replaces the old one; the old one is not
	// published on takeover (DESIGN.md section 3).
	c := connectWithWill(t, addr, packet.V311, "taken", 60, &packet.Will{Topic: "will/new", Payload: []byte("new"), QoS: 1})
	expectClosedSilently(t, old) // [MQTT-3.1.4-2]
	watcher.ExpectNone(quiet)
	dropConn(t, b, c, "taken")
	receive(t, watcher, "will/new", "new", 1)
	watcher.ExpectNone(quiet)
}

func TestWillV31(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	watcher := connect(t, addr, "watcher", true)
	subscribe(t, watcher, 1, "will31", 2)
	c := connectWithWill(t, addr, packet.V31, "old-proto", 60, &packet.Will{Topic: "will31", Payload: []byte("bye"), QoS: 2})
	if err := c.Conn.Close(); err != nil {
		t.Fatal(err)
	}
	receive(t, watcher, "will31", "bye", 2)
}
