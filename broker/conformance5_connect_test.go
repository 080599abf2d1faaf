package broker_test

// Conformance: MQTT 5.0 sections 3.1 (CONNECT properties), 3.2 (CONNACK
// properties), 3.1.4 (takeover), 4.11 (server redirection) and 3.14
// (server DISCONNECT on keepalive timeout and shutdown).

import (
	"context"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestConnack5AssignedClientIdentifier(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	seen := map[string]bool{}
	for i, clean := range []bool{true, false, true} {
		_, ack := connect5(t, addr, &packet.Connect{CleanStart: clean})
		// An empty client identifier gets an Assigned Client Identifier,
		// new and unused by any other session [MQTT-3.2.2-16] [MQTT-3.1.3-6].
		if !ack.Properties.Has(packet.PropAssignedClientIdentifier) || ack.Properties.AssignedClientIdentifier == "" {
			t.Fatalf("connection %d: CONNACK without Assigned Client Identifier [MQTT-3.2.2-16]", i)
		}
		id := ack.Properties.AssignedClientIdentifier
		if seen[id] {
			t.Fatalf("assigned client identifier %q handed out twice [MQTT-3.2.2-16]", id)
		}
		seen[id] = true
		if !hasSession(b, id) {
			t.Fatalf("broker holds no session under the assigned identifier %q", id)
		}
	}
	// A client that names itself is not assigned an identifier.
	_, ack := connect5(t, addr, &packet.Connect{ClientID: "named", CleanStart: true})
	if ack.Properties.Has(packet.PropAssignedClientIdentifier) {
		t.Fatalf("CONNACK assigns %q to a client that sent an identifier", ack.Properties.AssignedClientIdentifier)
	}
}

func TestConnack5ServerKeepAlive(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{MaxKeepAlive: 30 * time.Second})
	cases := []struct {
		asked uint16
		want  uint16 // 0: no Server Keep Alive expected
	}{
		{asked: 60, want: 30},
		{asked: 0, want: 30}, // no keepalive counts as above any maximum
		{asked: 10, want: 0},
		{asked: 30, want: 0},
	}
	for _, tc := range cases {
		c := mqtttest.Dial(t, addr, packet.V5)
		ack := c.Connect(&packet.Connect{CleanStart: true, KeepAlive: tc.asked})
		if ack.ReasonCode != packet.Success {
			t.Fatalf("keepalive %d: CONNACK %v, want success", tc.asked, ack.ReasonCode)
		}
		has := ack.Properties.Has(packet.PropServerKeepAlive)
		switch {
		case tc.want != 0 && (!has || ack.Properties.ServerKeepAlive != tc.want):
			t.Fatalf("keepalive %d: Server Keep Alive %v %d, want %d (5.0 section 3.2.2.3.14)", tc.asked, has, ack.Properties.ServerKeepAlive, tc.want)
		case tc.want == 0 && has && ack.Properties.ServerKeepAlive != tc.asked:
			t.Fatalf("keepalive %d within the maximum: Server Keep Alive %d", tc.asked, ack.Properties.ServerKeepAlive)
		}
	}
}

func TestConnack5ServerKeepAliveEnforced(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{MaxKeepAlive: time.Second})
	c := mqtttest.Dial(t, addr, packet.V5)
	start := time.Now()
	ack := c.Connect(&packet.Connect{ClientID: "ska", CleanStart: true, KeepAlive: 600})
	if ack.Properties.ServerKeepAlive != 1 {
		t.Fatalf("Server Keep Alive %d, want 1", ack.Properties.ServerKeepAlive)
	}
	// The broker holds the client to the keepalive it sent in CONNACK
	// [MQTT-3.2.2-21]: silent for 1.5 s, it is disconnected with 0x8D
	// [MQTT-3.1.2-22].
	expectDisconnect(t, c, packet.KeepAliveTimeout)
	if d := time.Since(start); d < time.Second || d > 4*time.Second {
		t.Fatalf("disconnected after %v, want about 1.5s", d)
	}
}

func TestConnack5ReceiveMaximum(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{ReceiveMaximum: 2})
	_, ack := connect5(t, addr, &packet.Connect{ClientID: "rm", CleanStart: true})
	// The broker's Receive Maximum below 65535 is announced (5.0 section 3.2.2.3.3).
	if !ack.Properties.Has(packet.PropReceiveMaximum) || ack.Properties.ReceiveMaximum != 2 {
		t.Fatalf("CONNACK Receive Maximum %v %d, want 2", ack.Properties.Has(packet.PropReceiveMaximum), ack.Properties.ReceiveMaximum)
	}

	_, addr = mqtttest.StartBroker(t, broker.Options{})
	_, ack = connect5(t, addr, &packet.Connect{ClientID: "rm", CleanStart: true})
	if ack.Properties.Has(packet.PropReceiveMaximum) && ack.Properties.ReceiveMaximum != 65535 {
		t.Fatalf("default CONNACK Receive Maximum %d, want absent or 65535", ack.Properties.ReceiveMaximum)
	}
}

func TestConnack5MaximumPacketSize(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{MaxPacketSize: 1000})
	_, ack := connect5(t, addr, &packet.Connect{ClientID: "mps", CleanStart: true})
	// The broker announces the largest packet it accepts (5.0 section 3.2.2.3.6).
	if !ack.Properties.Has(packet.PropMaximumPacketSize) || ack.Properties.MaximumPacketSize != 1000 {
		t.Fatalf("CONNACK Maximum Packet Size %v %d, want 1000", ack.Properties.Has(packet.PropMaximumPacketSize), ack.Properties.MaximumPacketSize)
	}
}

func TestConnack5TopicAliasMaximum(t *testing.T) {
	t.Parallel()
	cases := []struct {
		opt  int
		want uint16 // 0: absent (no inbound aliases)
	}{
		{opt: 0, want: 100},
		{opt: 5, want: 5},
		{opt: -1, want: 0},
	}
	for _, tc := range cases {
		_, addr := mqtttest.StartBroker(t, broker.Options{TopicAliasMaximum: tc.opt})
		_, ack := connect5(t, addr, &packet.Connect{ClientID: "tam", CleanStart: true})
		got := ack.Properties.TopicAliasMaximum
		if !ack.Properties.Has(packet.PropTopicAliasMaximum) {
			got = 0 // absent means 0 (5.0 section 3.2.2.3.8)
		}
		if got != tc.want {
			t.Fatalf("Options.TopicAliasMaximum %d: CONNACK Topic Alias Maximum %d, want %d", tc.opt, got, tc.want)
		}
	}
}

func TestConnack5AdvertisesFullSupport(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	_, ack := connect5(t, addr, &packet.Connect{ClientID: "caps", CleanStart: true})
	p := &ack.Properties
	// Petrel supports QoS 2, retain, wildcards, subscription identifiers
	// and shared subscriptions: each property is absent (meaning
	// supported) or says so (5.0 sections 3.2.2.3.4-3.2.2.3.13).
	if p.Has(packet.PropMaximumQoS) {
		t.Fatalf("CONNACK Maximum QoS %d, want absent (QoS 2 supported)", p.MaximumQoS)
	}
	for _, c := range []struct {
		id  packet.PropertyID
		val byte
	}{
		{packet.PropRetainAvailable, p.RetainAvailable},
		{packet.PropWildcardSubscriptionAvailable, p.WildcardSubscriptionAvailable},
		{packet.PropSubscriptionIdentifierAvailable, p.SubscriptionIdentifierAvailable},
		{packet.PropSharedSubscriptionAvailable, p.SharedSubscriptionAvailable},
	} {
		if p.Has(c.id) && c.val != 1 {
			t.Fatalf("CONNACK property 0x%02X = %d, want absent or 1", byte(c.id), c.val)
		}
	}
	// Without Request Response Information no Response Information is
	// returned [MQTT-3.1.2-28].
	if p.Has(packet.PropResponseInformation) {
		t.Fatalf("CONNACK Response Information %q without a request [MQTT-3.1.2-28]", p.ResponseInformation)
	}
}

func TestConnect5TakeoverSendsSessionTakenOver(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	old, _ := session5(t, addr, "taken", false, 60)
	sub5(t, old, 1, "take/#", 1, 0)
	nc, ack := session5(t, addr, "taken", false, 60)
	// The existing connection gets DISCONNECT 0x8E and is closed [MQTT-3.1.4-3].
	expectDisconnect(t, old, packet.SessionTakenOver)
	if !ack.SessionPresent {
		t.Fatalf("takeover with clean start 0: session present 0, want 1 [MQTT-3.2.2-3]")
	}
	// The new connection has the session.
	pub := client5(t, addr, "take-pub")
	pub5(t, pub, "take/x", 1, false, "hi", 1)
	expectPub(t, nc, "take/x", "hi")
	if st, ok := b.ClientStats("taken"); !ok || !st.Online {
		t.Fatalf("session not online after takeover: %+v %v", st, ok)
	}
}

func TestConnect5KeepAliveTimeoutSendsDisconnect(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := mqtttest.Dial(t, addr, packet.V5)
	start := time.Now()
	c.Connect(&packet.Connect{ClientID: "ka", CleanStart: true, KeepAlive: 1})
	// No packet within 1.5 x keepalive: DISCONNECT 0x8D, then close
	// [MQTT-3.1.2-22] (5.0 section 4.13).
	expectDisconnect(t, c, packet.KeepAliveTimeout)
	if d := time.Since(start); d < 1400*time.Millisecond {
		t.Fatalf("disconnected after %v, before 1.5 x keepalive", d)
	}
}

func TestConnect5ServerRedirection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		permanent bool
		code      packet.ReasonCode
	}{
		{false, packet.UseAnotherServer},
		{true, packet.ServerMoved},
	} {
		b, addr := mqtttest.StartBroker(t, broker.Options{Redirect: "other.example:1883", RedirectPermanent: tc.permanent})
		c := mqtttest.Dial(t, addr, packet.V5)
		c.Send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "moved", CleanStart: true, KeepAlive: 60})
		// CONNACK 0x9C / 0x9D with a Server Reference, then close (5.0
		// section 4.11, 3.2.2.3.16).
		ack := expectConnackRefused(t, c, tc.code)
		if !ack.Properties.Has(packet.PropServerReference) || ack.Properties.ServerReference != "other.example:1883" {
			t.Fatalf("CONNACK %v Server Reference %q, want other.example:1883", tc.code, ack.Properties.ServerReference)
		}
		if hasSession(b, "moved") {
			t.Fatalf("redirected client got a session")
		}
	}
}

func TestConnect5ShutdownSendsServerShuttingDown(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	c1 := client5(t, addr, "sd1")
	c2 := client5(t, addr, "sd2")
	old, _ := mqtttest.Connect(t, addr, packet.V311, "sd3", true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// 5.0 clients get DISCONNECT 0x8B before the close (5.0 section 3.14.2.1).
	expectDisconnect(t, c1, packet.ServerShuttingDown)
	expectDisconnect(t, c2, packet.ServerShuttingDown)
	// 3.1.1 has no server DISCONNECT: the connection just closes.
	expectClosedSilently(t, old)
}

func TestConnect5RequestProblemInformationZero(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	p := &packet.Connect{ClientID: "rpi", CleanStart: true}
	p.Properties.RequestProblemInformation = 0
	p.Properties.Set(packet.PropRequestProblemInformation)
	c, _ := connect5(t, addr, p)
	// With Request Problem Information 0 no Reason String or User
	// Property goes on any packet but PUBLISH, CONNACK or DISCONNECT
	// [MQTT-3.1.2-29].
	c.Send(&packet.Publish{Topic: "nobody/here", QoS: 1, PacketID: 1})
	a := expect[*packet.Puback](t, c)
	c.Send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"not/subscribed"}})
	u := expect[*packet.Unsuback](t, c)
	c.Send(&packet.Subscribe{PacketID: 3, Subscriptions: []packet.Subscription{{Filter: "a/#/b"}}})
	s := expect[*packet.Suback](t, c)
	for _, props := range []*packet.Properties{&a.Properties, &u.Properties, &s.Properties} {
		if props.Has(packet.PropReasonString) || props.Has(packet.PropUserProperty) {
			t.Fatalf("reason string %q / user properties %v sent with Request Problem Information 0 [MQTT-3.1.2-29]",
				props.ReasonString, props.UserProperties)
		}
	}
}

func TestConnack5RespectsClientMaximumPacketSize(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := mqtttest.Dial(t, addr, packet.V5)
	p := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "tiny", CleanStart: true, KeepAlive: 60}
	p.Properties.MaximumPacketSize = 24
	p.Properties.Set(packet.PropMaximumPacketSize)
	p.Properties.AuthenticationMethod = "no-such-method"
	p.Properties.Set(packet.PropAuthenticationMethod)
	c.Send(p)
	ack := expectConnackRefused(t, c, packet.BadAuthenticationMethod)
	// The Reason String is left out when it would make the CONNACK larger
	// than the client's Maximum Packet Size [MQTT-3.2.2-19]
	// [MQTT-3.1.2-24].
	raw, err := ack.Append(nil, packet.V5)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 24 {
		t.Fatalf("CONNACK of %d bytes (reason string %q) to a client with Maximum Packet Size 24 [MQTT-3.2.2-19]", len(raw), ack.Properties.ReasonString)
	}
}
