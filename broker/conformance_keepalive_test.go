package broker_test

// Conformance: MQTT 3.1.1 section 3.1.2.10 (keep alive) and 3.12-3.13
// (PINGREQ, PINGRESP).

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

func connectKeepAlive(t *testing.T, addr, id string, keepAlive uint16) *mqtttest.Client {
	t.Helper()
	c := mqtttest.Dial(t, addr, packet.V311)
	if ack := c.Connect(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: keepAlive}); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	return c
}

func TestKeepAliveClosesAfterOneAndAHalfPeriods(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	cases := []struct {
		keepAlive uint16
		notBefore time.Duration // still open at this time after the last packet
		closedBy  time.Duration // closed by this time
	}{
		// 1.5 x keepalive, measured in milliseconds [MQTT-3.1.2-24]: open
		// past 1 x keepalive, closed a generous margin after 1.5 x.
		{1, 1200 * time.Millisecond, 3 * time.Second},
		{2, 2500 * time.Millisecond, 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%ds", tc.keepAlive), func(t *testing.T) {
			t.Parallel()
			c := connectKeepAlive(t, addr, fmt.Sprintf("ka-%d", tc.keepAlive), tc.keepAlive)
			last := time.Now() // the CONNACK arrived after the broker read CONNECT
			c.ExpectNone(tc.notBefore - time.Since(last))
			if err := c.Conn.SetReadDeadline(last.Add(tc.closedBy)); err != nil {
				t.Fatal(err)
			}
			_, err := packet.ReadPacket(c.Conn, packet.V311, 0)
			if err == nil {
				t.Fatalf("got a packet, want the connection closed [MQTT-3.1.2-24]")
			}
			if elapsed := time.Since(last); elapsed >= tc.closedBy {
				t.Fatalf("not closed %v after the last packet (keepalive %ds): %v [MQTT-3.1.2-24]", elapsed, tc.keepAlive, err)
			}
		})
	}
}

func TestKeepAliveResetByAnyControlPacket(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	cases := []struct {
		name string
		send func(t *testing.T, c *mqtttest.Client)
	}{
		{"PINGREQ", func(t *testing.T, c *mqtttest.Client) {
			c.Send(&packet.Pingreq{})
			expect[*packet.Pingresp](t, c)
		}},
		{"PUBLISH QoS 0", func(t *testing.T, c *mqtttest.Client) {
			c.Send(&packet.Publish{Topic: "ka/keep", Payload: []byte("x")})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := connectKeepAlive(t, addr, "ka-reset-"+tc.name, 1)
			// Packets every 700ms for 2.8s: well past 1.5s in total, never
			// 1.5s without a packet [MQTT-3.1.2-23].
			deadline := time.Now().Add(2800 * time.Millisecond)
			for time.Now().Before(deadline) {
				c.ExpectNone(700 * time.Millisecond)
				tc.send(t, c)
			}
		})
	}
}

func TestKeepAliveZeroNeverTimesOut(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := connectKeepAlive(t, addr, "ka-zero", 0)
	c.ExpectNone(2 * time.Second) // keepalive 0 turns the mechanism off (3.1.1 section 3.1.2.10)
	c.Send(&packet.Pingreq{})
	expect[*packet.Pingresp](t, c)
}

func TestPingreqAnsweredWithPingresp(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	for _, v := range []packet.Version{packet.V311, packet.V31} {
		c := mqtttest.Dial(t, addr, v)
		c.Connect(&packet.Connect{ClientID: "ping-" + v.String(), CleanStart: true, KeepAlive: 60})
		for range 3 {
			c.SendRaw([]byte{0xC0, 0x00})
			raw := make([]byte, 2)
			if _, err := readFull(c, raw); err != nil {
				t.Fatalf("read PINGRESP: %v", err)
			}
			if !slices.Equal(raw, []byte{0xD0, 0x00}) { // [MQTT-3.12.4-1]
				t.Fatalf("%v: got % X, want D0 00 (PINGRESP)", v, raw)
			}
		}
	}
}
