package broker_test

// Conformance: malformed, truncated and random input (MQTT 3.1.1 sections
// 1.5.3, 2.2, 4.8): the offending connection is closed, and the broker and
// every other client are unaffected (DESIGN.md section 3, "Bad input").

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// observers are a subscriber and a publisher connected for a whole test;
// check proves both still work.
type observers struct {
	sub, pub *mqtttest.Client
	n        uint16
}

func newObservers(t *testing.T, addr string) *observers {
	t.Helper()
	o := &observers{sub: connect(t, addr, "observer-sub", true), pub: connect(t, addr, "observer-pub", true)}
	subscribe(t, o.sub, 1, "observe/#", 1)
	return o
}

func (o *observers) check(t *testing.T) {
	t.Helper()
	o.n++
	topic := fmt.Sprintf("observe/%d", o.n)
	publish(t, o.pub, topic, 1, false, "still here", o.n)
	receive(t, o.sub, topic, "still here", 1)
}

func closeWrite(t *testing.T, c *mqtttest.Client) {
	t.Helper()
	if err := c.Conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
}

func pubBody(topic string, pid ...byte) []byte {
	return append(appendStr(nil, topic), pid...)
}

func TestMalformedPacketAfterConnectClosesOnlyThatConnection(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	o := newObservers(t, addr)
	cases := []struct {
		name   string
		raw    []byte
		clause string
	}{
		{"reserved packet type 0", []byte{0x00, 0x00}, "3.1.1 section 2.2.1"},
		{"reserved packet type 15", []byte{0xF0, 0x00}, "3.1.1 section 2.2.1"},
		{"remaining length of 5 bytes", []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, "3.1.1 section 2.2.3"},
		{"PUBLISH QoS 3", rawPacket(0x36, pubBody("a", 0, 1, 'x')), "[MQTT-3.3.1-4]"},
		{"PUBLISH DUP with QoS 0", rawPacket(0x38, pubBody("a", 'x')), "[MQTT-3.3.1-2]"},
		{"PUBLISH topic length beyond packet", rawPacket(0x30, []byte{0x00, 0x10, 'a'}), "[MQTT-4.8.0-1]"},
		{"PUBLISH QoS 1 without packet id", rawPacket(0x32, pubBody("a")), "[MQTT-2.3.1-1]"},
		{"PUBLISH packet id 0", rawPacket(0x32, pubBody("a", 0, 0, 'x')), "[MQTT-2.3.1-1]"},
		{"PUBLISH empty topic", rawPacket(0x30, pubBody("", 'x')), "[MQTT-4.7.3-1]"},
		{"PUBLISH topic not UTF-8", rawPacket(0x30, pubBody("a\xff\xfe", 'x')), "[MQTT-1.5.3-1]"},
		{"PUBLISH topic with surrogate", rawPacket(0x30, pubBody("a\xed\xa0\x80", 'x')), "[MQTT-1.5.3-1]"},
		{"PUBLISH topic with U+0000", rawPacket(0x30, pubBody("a\x00b", 'x')), "[MQTT-1.5.3-2]"},
		{"PUBACK remaining length 3", []byte{0x40, 0x03, 0x00, 0x01, 0x00}, "3.1.1 section 3.4.1"},
		{"PUBACK remaining length 1", []byte{0x40, 0x01, 0x00}, "3.1.1 section 3.4.1"},
		{"PUBACK flags set", []byte{0x41, 0x02, 0x00, 0x01}, "[MQTT-2.2.2-2]"},
		{"PUBREL flags 0", []byte{0x60, 0x02, 0x00, 0x01}, "[MQTT-3.6.1-1]"},
		{"PUBREC packet id 0", []byte{0x50, 0x02, 0x00, 0x00}, "[MQTT-2.3.1-1]"},
		{"PINGREQ with a body", []byte{0xC0, 0x01, 0x00}, "3.1.1 section 3.12.1"},
		{"PINGREQ flags set", []byte{0xC1, 0x00}, "[MQTT-2.2.2-2]"},
		{"DISCONNECT flags set", []byte{0xE2, 0x00}, "[MQTT-2.2.2-2]"},
		{"CONNACK from a client", []byte{0x20, 0x02, 0x00, 0x00}, "server-to-client packet"},
		{"SUBACK from a client", []byte{0x90, 0x03, 0x00, 0x01, 0x00}, "server-to-client packet"},
		{"UNSUBACK from a client", []byte{0xB0, 0x02, 0x00, 0x01}, "server-to-client packet"},
		{"PINGRESP from a client", []byte{0xD0, 0x00}, "server-to-client packet"},
		{"SUBSCRIBE filter not UTF-8", rawPacket(0x82, append(appendStr([]byte{0, 1}, "\xc0\xaf"), 0)), "[MQTT-1.5.3-1]"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t, addr, fmt.Sprintf("victim-%d", i), true)
			c.SendRaw(tc.raw)
			expectClosedSilently(t, c) // tc.clause; [MQTT-4.8.0-1]
			o.check(t)
		})
	}
	mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Clients == 2 }, "only the 2 observers connected")
}

func TestMalformedConnectClosesOnlyThatConnection(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	o := newObservers(t, addr)
	good := rawConnect("MQTT", 4, 0x02, 60, "cid")
	shortLen := append([]byte{0x10, good[1] - 2}, good[2:len(good)-2]...)
	cases := []struct {
		name string
		raw  []byte
	}{
		{"remaining length shorter than the fields", shortLen},
		{"trailing bytes after the fields", rawPacket(0x10, append(good[2:], 0xAA, 0xBB))},
		{"CONNECT flags in the fixed header", append([]byte{0x11}, good[1:]...)},
		{"client id not UTF-8", rawConnect("MQTT", 4, 0x02, 60, "\xff")},
		{"client id with U+0000", rawConnect("MQTT", 4, 0x02, 60, "a\x00b")},
		{"empty body", []byte{0x10, 0x00}},
		{"protocol name only", rawPacket(0x10, appendStr(nil, "MQTT"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mqtttest.Dial(t, addr, packet.V311)
			c.SendRaw(tc.raw)
			expectClosedSilently(t, c) // [MQTT-4.8.0-1]; the client id must be valid UTF-8 [MQTT-1.5.3-1] [MQTT-1.5.3-2]
			o.check(t)
		})
	}
}

func TestTruncatedPacketThenEOFClosesOnlyThatConnection(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	o := newObservers(t, addr)
	full := mustEncode(t, &packet.Publish{Topic: "trunc/t", QoS: 1, PacketID: 5, Payload: make([]byte, 1000)})
	cases := []struct {
		name      string
		connected bool
		raw       []byte
	}{
		{"CONNECT cut in the fixed header", false, []byte{0x10}},
		{"CONNECT cut in the body", false, rawConnect("MQTT", 4, 0x02, 60, "cut")[:8]},
		{"PUBLISH cut in the remaining length", true, []byte{0x30, 0x80}},
		{"PUBLISH cut in the body", true, full[:len(full)/2]},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c *mqtttest.Client
			if tc.connected {
				c = connect(t, addr, fmt.Sprintf("trunc-%d", i), true)
			} else {
				c = mqtttest.Dial(t, addr, packet.V311)
			}
			c.SendRaw(tc.raw)
			closeWrite(t, c)
			expectClosedSilently(t, c)
			o.check(t)
		})
	}
	// Nothing of the cut PUBLISH was routed.
	o.sub.ExpectNone(quiet)
}

func TestRandomBytesCloseOnlyThatConnection(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	o := newObservers(t, addr)
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("first packet seed %d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			junk := make([]byte, 64)
			for i := range junk {
				junk[i] = byte(r.UintN(256))
			}
			if junk[0]>>4 == byte(packet.CONNECT) {
				junk[0] ^= 0x80
			}
			c := mqtttest.Dial(t, addr, packet.V311)
			c.SendRaw(junk)
			expectClosedSilently(t, c) // not CONNECT first [MQTT-3.1.0-1]
			o.check(t)
		})
		t.Run(fmt.Sprintf("after CONNECT seed %d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 2))
			junk := make([]byte, 1+r.IntN(4096))
			for i := range junk {
				junk[i] = byte(r.UintN(256))
			}
			c := connect(t, addr, fmt.Sprintf("junk-%d", seed), true)
			c.SendRaw(junk)
			// The broker may have closed already (the junk was malformed):
			// then the half-close fails, and that is fine.
			_ = c.Conn.(*net.TCPConn).CloseWrite()
			c.ExpectClosed() // whatever was valid in the junk may have been answered first
			o.check(t)
		})
	}
}

func TestPacketTooLargeClosesOnlyThatConnection(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{MaxPacketSize: 1024})
	o := newObservers(t, addr)
	c := connect(t, addr, "big", true)
	// Only the fixed header is sent: the broker refuses on the declared size
	// without waiting for (or buffering) the body.
	c.SendRaw([]byte{0x30, 0x80, 0x80, 0x40}) // remaining length 1 MiB
	expectClosedSilently(t, c)
	o.check(t)

	c = connect(t, addr, "big2", true)
	c.Send(&packet.Publish{Topic: "observe/big", Payload: make([]byte, 2000)})
	expectClosedSilently(t, c)
	o.sub.ExpectNone(quiet)
	o.check(t)
}
