package auth

import (
	"fmt"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestSCRAMThroughTheBroker runs 5.0 enhanced authentication end to end:
// CONNECT with Authentication Method SCRAM-SHA-256 and the client-first
// message, AUTH 0x18 server-first, AUTH 0x18 client-final, CONNACK with
// server-final [MQTT-4.12.0-1]; then re-authentication with AUTH 0x19
// ending in AUTH 0x00; a wrong password is refused with CONNACK 0x86.
func TestSCRAMThroughTheBroker(t *testing.T) {
	cr, err := NewSCRAMCredentials([]byte("s3cret"), 0)
	if err != nil {
		t.Fatal(err)
	}
	uf := writeUsers(t, fmt.Sprintf("  - {username: dev, scram_sha256: '%s', tenant: A, roles: [BUBBLE_UP_READ_CONSUMER]}\n", cr))
	s := newService(t, Config{UsersFile: uf})
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: s, Authorizer: s})

	c := mqtttest.Dial(t, addr, packet.V5)
	sc := &scramClient{user: "dev", pass: "s3cret", cnonce: "rOprNGfwEbeRWgbNEkqO"}
	con := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "dev-1", CleanStart: true, KeepAlive: 60}
	scramMethod(&con.Properties, sc.clientFirst())
	ack, ok := scramRoundTrip(t, c, con, sc).(*packet.Connack)
	if !ok || ack.ReasonCode != packet.Success {
		t.Fatalf("want CONNACK success, got %+v", ack)
	}
	if !sc.checkServerFinal(ack.Properties.AuthenticationData) {
		t.Fatal("server-final in CONNACK does not prove the server knows the credentials")
	}
	// The identity's roles apply: tenant A may read A/read/#, not B/read/#.
	if codes := c.Subscribe(1, packet.Subscription{Filter: "A/read/#"}, packet.Subscription{Filter: "B/read/#"}); codes[0] != 0 || codes[1] != packet.NotAuthorized {
		t.Fatalf("SUBACK %v, want granted then 0x87", codes)
	}

	// Re-authentication [MQTT-4.12.1-1].
	sc2 := &scramClient{user: "dev", pass: "s3cret", cnonce: "another-nonce-0123456789"}
	re := &packet.Auth{ReasonCode: packet.ReAuthenticate}
	scramMethod(&re.Properties, sc2.clientFirst())
	done, ok := scramRoundTrip(t, c, re, sc2).(*packet.Auth)
	if !ok || done.ReasonCode != packet.Success || !sc2.checkServerFinal(done.Properties.AuthenticationData) {
		t.Fatalf("re-authentication: want AUTH 0x00 with server-final, got %+v", done)
	}

	bad := mqtttest.Dial(t, addr, packet.V5)
	wrong := &scramClient{user: "dev", pass: "guess", cnonce: "yet-another-nonce-987654"}
	con2 := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "dev-2", CleanStart: true, KeepAlive: 60}
	scramMethod(&con2.Properties, wrong.clientFirst())
	if ack, ok := scramRoundTrip(t, bad, con2, wrong).(*packet.Connack); !ok || ack.ReasonCode != packet.BadUsernameOrPassword {
		t.Fatalf("wrong password: want CONNACK 0x86, got %+v", ack)
	}
}

// scramMethod sets Authentication Method SCRAM-SHA-256 and data in p.
func scramMethod(p *packet.Properties, data []byte) {
	p.AuthenticationMethod = SCRAMMethod
	p.Set(packet.PropAuthenticationMethod)
	p.AuthenticationData = data
	p.Set(packet.PropAuthenticationData)
}

// scramRoundTrip sends first (a CONNECT or AUTH 0x19 with the client-first
// message), answers the server-first with the client-final and returns
// the broker's last answer (CONNACK or AUTH).
func scramRoundTrip(t *testing.T, c *mqtttest.Client, first packet.Packet, sc *scramClient) packet.Packet {
	t.Helper()
	c.Send(first)
	cont, ok := c.Expect().(*packet.Auth)
	if !ok || cont.ReasonCode != packet.ContinueAuthentication || cont.Properties.AuthenticationMethod != SCRAMMethod {
		t.Fatalf("want AUTH 0x18 with server-first, got %+v", cont)
	}
	a := &packet.Auth{ReasonCode: packet.ContinueAuthentication}
	scramMethod(&a.Properties, sc.clientFinal(t, cont.Properties.AuthenticationData))
	c.Send(a)
	return c.Expect()
}
