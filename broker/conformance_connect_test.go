package broker_test

// Conformance: MQTT 3.1.1 section 3.1 (CONNECT) and 3.2 (CONNACK), with the
// MQTT 3.1 (MQIsdp) specifics.

import (
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// mustEncode encodes p for 3.1.1.
func mustEncode(t testing.TB, p packet.Packet) []byte {
	t.Helper()
	b, err := p.Append(nil, packet.V311)
	if err != nil {
		t.Fatalf("encode %s: %v", p.Type(), err)
	}
	return b
}

func TestConnectFirstPacketNotConnectCloses(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	cases := []struct {
		name string
		pkt  packet.Packet
		raw  []byte
	}{
		{name: "PUBLISH", pkt: &packet.Publish{Topic: "a", QoS: 1, PacketID: 1, Payload: []byte("x")}},
		{name: "SUBSCRIBE", pkt: &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "#"}}}},
		{name: "PINGREQ", pkt: &packet.Pingreq{}},
		{name: "DISCONNECT", pkt: &packet.Disconnect{}},
		{name: "CONNACK", pkt: &packet.Connack{}},
		{name: "garbage", raw: []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
		{name: "reserved type 0", raw: []byte{0x00, 0x00}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mqtttest.Dial(t, addr, packet.V311)
			if tc.raw != nil {
				c.SendRaw(tc.raw)
			} else {
				c.SendRaw(mustEncode(t, tc.pkt))
			}
			expectClosedSilently(t, c) // [MQTT-3.1.0-1]
		})
	}
}

func TestConnectSecondConnectCloses(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := connect(t, addr, "twice", true)
	c.Send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: "twice", CleanStart: true})
	expectClosedSilently(t, c) // [MQTT-3.1.0-2]
	roundTrip(t, addr)
}

func TestConnectBadProtocolNameClosesWithoutConnack(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	for _, name := range []string{"MQTX", "mqtt", "", "MQIsdpX"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := mqtttest.Dial(t, addr, packet.V311)
			c.SendRaw(rawConnect(name, 4, 0x02, 60, "bad-name"))
			expectClosedSilently(t, c) // [MQTT-3.1.2-1]
		})
	}
}

func TestConnectUnsupportedLevelRefusedWithCode1(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	cases := []struct {
		name  string
		proto string
		level byte
	}{
		{"MQTT level 3", "MQTT", 3},
		{"MQTT level 6", "MQTT", 6},
		{"MQTT level 0", "MQTT", 0},
		{"MQIsdp level 4", "MQIsdp", 4},
		{"MQTT level 255", "MQTT", 255},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mqtttest.Dial(t, addr, packet.V311)
			c.SendRaw(rawConnect(tc.proto, tc.level, 0x02, 60, "lvl"))
			expectRefused(t, c, 1) // [MQTT-3.1.2-2]
		})
	}
}

func TestConnectInvalidFlagsClose(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	cases := []struct {
		name   string
		flags  byte
		fields []string
		clause string
	}{
		{"reserved flag", 0x03, []string{"id"}, "[MQTT-3.1.2-3]"},
		{"reserved flag only", 0x01, []string{"id"}, "[MQTT-3.1.2-3]"},
		{"will QoS without will flag", 0x0A, []string{"id"}, "[MQTT-3.1.2-13]"},
		{"will retain without will flag", 0x22, []string{"id"}, "[MQTT-3.1.2-15]"},
		{"will QoS 3", 0x1E, []string{"id", "w/t", "msg"}, "[MQTT-3.1.2-14]"},
		{"password without user name", 0x42, []string{"id", "secret"}, "[MQTT-3.1.2-22]"},
		{"user name flag without user name", 0x82, []string{"id"}, "[MQTT-3.1.2-19]"},
		{"will flag without will fields", 0x06, []string{"id"}, "[MQTT-3.1.2-9]"},
	}
	t.Run("group", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name+" "+tc.clause, func(t *testing.T) {
				t.Parallel()
				c := mqtttest.Dial(t, addr, packet.V311)
				c.SendRaw(rawConnect("MQTT", 4, tc.flags, 60, tc.fields...))
				expectClosedSilently(t, c) // clause in the subtest name
			})
		}
	})
	roundTrip(t, addr) // the broker still serves other clients
}

func TestConnectWillTopicWithWildcardCloses(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	for _, wt := range []string{"w/#", "w/+/x", ""} {
		c := mqtttest.Dial(t, addr, packet.V311)
		c.Send(&packet.Connect{ClientID: "wild-will", CleanStart: true, KeepAlive: 60,
			Will: &packet.Will{Topic: wt, Payload: []byte("x")}})
		for _, p := range c.ExpectClosed() { // will topic must be a valid topic name [MQTT-3.1.2-9] [MQTT-3.3.2-2] [MQTT-4.7.3-1]
			if a, ok := p.(*packet.Connack); ok && a.ReasonCode == packet.Success {
				t.Fatalf("will topic %q: CONNACK accepted", wt)
			}
		}
	}
}

func TestConnectEmptyClientID(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)

	t.Run("clean session 0 refused with code 2", func(t *testing.T) {
		c := mqtttest.Dial(t, addr, packet.V311)
		c.Send(&packet.Connect{ClientID: "", CleanStart: false, KeepAlive: 60})
		expectRefused(t, c, 2) // [MQTT-3.1.3-8]
	})
	t.Run("clean session 1 accepted", func(t *testing.T) {
		c1, ack1 := mqtttest.Connect(t, addr, packet.V311, "", true) // [MQTT-3.1.3-6]
		if ack1.SessionPresent {
			t.Fatalf("session present for an empty client id [MQTT-3.2.2-1]")
		}
		// A second client without an id gets its own, distinct session:
		// both stay connected and both work.
		c2, _ := mqtttest.Connect(t, addr, packet.V311, "", true)
		subscribe(t, c1, 1, "anon/1", 0)
		subscribe(t, c2, 1, "anon/2", 0)
		if n := b.Stats().Clients; n < 2 {
			t.Fatalf("%d clients connected, want both anonymous clients", n)
		}
		pub := connect(t, addr, "anon-pub", true)
		publish(t, pub, "anon/1", 1, false, "one", 1)
		publish(t, pub, "anon/2", 1, false, "two", 2)
		receive(t, c1, "anon/1", "one", 0)
		receive(t, c2, "anon/2", "two", 0)
	})
}

func TestConnectV31ClientIDLength(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	cases := []struct {
		name string
		id   string
		rc   byte
	}{
		{"23 characters accepted", strings.Repeat("a", 23), 0},
		{"1 character accepted", "a", 0},
		{"24 characters refused", strings.Repeat("b", 24), 2},
		{"100 characters refused", strings.Repeat("c", 100), 2},
		{"empty refused", "", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mqtttest.Dial(t, addr, packet.V31)
			c.Send(&packet.Connect{ClientID: tc.id, CleanStart: true, KeepAlive: 60})
			if tc.rc != 0 {
				expectRefused(t, c, tc.rc) // MQTT 3.1 section 3.1: client id 1..23 characters, else return code 2
				return
			}
			ack := expect[*packet.Connack](t, c)
			if ack.ReasonCode != packet.Success {
				t.Fatalf("CONNACK %v, want accepted", ack.ReasonCode)
			}
			// The 3.1 connection works: subscribe and receive.
			subscribe(t, c, 1, "v31/"+tc.id, 1)
			pub := connect(t, addr, "v31pub-"+tc.id, true)
			publish(t, pub, "v31/"+tc.id, 1, false, "hello", 1)
			receive(t, c, "v31/"+tc.id, "hello", 1)
		})
	}
}

func TestConnectV311LongClientIDAccepted(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	for _, id := range []string{strings.Repeat("x", 24), strings.Repeat("y", 1000), "ünïcødé-ид-客户端", "with/slash+plus#hash"} {
		c := mqtttest.Dial(t, addr, packet.V311)
		// 3.1.1 allows longer identifiers and any UTF-8 [MQTT-3.1.3-5]; Petrel
		// accepts any length (DESIGN.md section 3).
		if ack := c.Connect(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 60}); ack.ReasonCode != packet.Success {
			t.Fatalf("client id %q: CONNACK %v", id, ack.ReasonCode)
		}
	}
}

func TestConnectUserNamePasswordAcceptedByDefault(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := mqtttest.Dial(t, addr, packet.V311)
	ack := c.Connect(&packet.Connect{ClientID: "up", CleanStart: true, KeepAlive: 60,
		UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("pw")})
	if ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
}

// disconnect sends DISCONNECT, waits for the close, and waits until the
// broker has detached the session.
func disconnect(t *testing.T, b *broker.Broker, c *mqtttest.Client, id string) {
	t.Helper()
	c.Send(&packet.Disconnect{})
	expectClosedSilently(t, c) // [MQTT-3.14.4-1]
	mqtttest.Eventually(t, 5*time.Second, func() bool {
		st, ok := b.ClientStats(id)
		return !ok || !st.Online
	}, "session of "+id+" offline")
}

func TestConnackSessionPresent(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	steps := []struct {
		clean   bool
		present bool
		clause  string
	}{
		{clean: true, present: false, clause: "[MQTT-3.2.2-1]"},
		{clean: false, present: false, clause: "[MQTT-3.2.2-3] no session stored (clean session discarded it)"},
		{clean: false, present: true, clause: "[MQTT-3.2.2-2]"},
		{clean: false, present: true, clause: "[MQTT-3.2.2-2] again"},
		{clean: true, present: false, clause: "[MQTT-3.2.2-1] clean session with a stored session"},
		{clean: false, present: false, clause: "[MQTT-3.1.2-6] the clean session discarded the stored one"},
	}
	for i, s := range steps {
		c, ack := mqtttest.Connect(t, addr, packet.V311, "sp", s.clean)
		if ack.SessionPresent != s.present {
			t.Fatalf("step %d (clean=%v): session present %v, want %v %s", i, s.clean, ack.SessionPresent, s.present, s.clause)
		}
		disconnect(t, b, c, "sp")
	}
}

func TestConnackSessionPresentV31AlwaysZero(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	c, _ := mqtttest.Connect(t, addr, packet.V31, "sp31", false)
	disconnect(t, b, c, "sp31")
	// 3.1 has no session present flag: the byte is reserved and sent as 0.
	c = mqtttest.Dial(t, addr, packet.V31)
	c.Send(&packet.Connect{ClientID: "sp31", KeepAlive: 60})
	if err := c.Conn.SetReadDeadline(time.Now().Add(mqtttest.Timeout)); err != nil {
		t.Fatal(err)
	}
	var raw [4]byte
	if _, err := readFull(c, raw[:]); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if raw != [4]byte{0x20, 0x02, 0x00, 0x00} {
		t.Fatalf("3.1 CONNACK bytes % X, want 20 02 00 00", raw)
	}
}

func readFull(c *mqtttest.Client, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Conn.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestConnackBytesV311(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	c := mqtttest.Dial(t, addr, packet.V311)
	c.Send(&packet.Connect{ClientID: "bytes", CleanStart: true, KeepAlive: 60})
	if err := c.Conn.SetReadDeadline(time.Now().Add(mqtttest.Timeout)); err != nil {
		t.Fatal(err)
	}
	var raw [4]byte
	if _, err := readFull(c, raw[:]); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	// Fixed header 0x20, remaining length 2, flags 0, return code 0
	// [MQTT-3.2.2-1] (reserved bits 0, 3.1.1 section 3.2.2.1).
	if raw != [4]byte{0x20, 0x02, 0x00, 0x00} {
		t.Fatalf("CONNACK bytes % X, want 20 02 00 00", raw)
	}
}

func TestConnectTimeoutClosesSilentConnection(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{ConnectTimeout: 300 * time.Millisecond})
	c := mqtttest.Dial(t, addr, packet.V311)
	start := time.Now()
	expectClosedSilently(t, c) // 3.1.1 section 3.1.4: no CONNECT within a reasonable time
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("closed after %v, before the connect timeout", d)
	}
	// A partial CONNECT that never completes is closed too.
	c = mqtttest.Dial(t, addr, packet.V311)
	c.SendRaw(rawConnect("MQTT", 4, 0x02, 60, "partial")[:6])
	expectClosedSilently(t, c)
}
