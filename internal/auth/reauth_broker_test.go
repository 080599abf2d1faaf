package auth

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestReauthenticationReauthorizes: a 5.0 re-authentication [MQTT-4.12.1-1]
// that brings the same user with narrower roles (the users file changed
// and was reloaded) decides the connection's subscriptions and queue
// again: the subscription the new roles refuse is removed, the queued
// message they refuse is not delivered, what they allow still is. No
// policy-wide re-check (Broker.Reauthorize) runs here: re-authentication
// alone does it. A re-authentication that changes nothing revokes nothing.
func TestReauthenticationReauthorizes(t *testing.T) {
	cr, err := NewSCRAMCredentials([]byte("s3cret"), 0)
	if err != nil {
		t.Fatal(err)
	}
	gwHash, err := HashBcrypt([]byte("gw-pass"), 4)
	if err != nil {
		t.Fatal(err)
	}
	usersWith := func(role string) string {
		return fmt.Sprintf("  - {username: dev, scram_sha256: '%s', tenant: A, roles: [%s]}\n", cr, role) +
			fmt.Sprintf("  - {username: gw, password: '%s', tenant: A, roles: [PUB_ALL]}\n", gwHash)
	}
	uf := writeUsers(t, usersWith("ALL_READ"))
	cfg := Config{UsersFile: uf, Roles: []Role{
		{Name: "ALL_READ", Activity: ActivitySubscribe, MaxQoS: 1, Topics: []string{"{tenantId}/#"}},
		{Name: "PUBLIC_READ", Activity: ActivitySubscribe, MaxQoS: 1, Topics: []string{"{tenantId}/public/#"}},
		{Name: "PUB_ALL", Activity: ActivityPublish, MaxQoS: 1, Topics: []string{"#"}},
	}}
	s := newService(t, cfg)
	// A window of one: what follows an unacknowledged message waits in
	// the queue.
	b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: s, Authorizer: s, MaxInflight: 1})

	c := mqtttest.Dial(t, addr, packet.V5)
	sc := &scramClient{user: "dev", pass: "s3cret", cnonce: "first-nonce-0123456789"}
	con := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "dev-1", CleanStart: true, KeepAlive: 60}
	scramMethod(&con.Properties, sc.clientFirst())
	if ack, ok := scramRoundTrip(t, c, con, sc).(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
		t.Fatalf("want CONNACK success, got %+v", ack)
	}
	if codes := c.Subscribe(1, packet.Subscription{Filter: "A/#", QoS: 1}, packet.Subscription{Filter: "A/public/#", QoS: 1}); !slices.Equal(codes, []packet.ReasonCode{1, 1}) {
		t.Fatalf("SUBACK %v, want both granted", codes)
	}
	gw := mqtttest.Dial(t, addr, packet.V5)
	if ack := gw.Connect(&packet.Connect{ClientID: "gw", CleanStart: true, Username: "gw", UsernameFlag: true,
		Password: []byte("gw-pass"), PasswordFlag: true}); ack.ReasonCode != packet.Success {
		t.Fatalf("gateway CONNACK %v", ack.ReasonCode)
	}
	publish := func(topics ...string) {
		t.Helper()
		for i, topic := range topics {
			gw.Send(&packet.Publish{Topic: topic, QoS: 1, PacketID: uint16(i + 1), Payload: []byte("x")})
			if _, ok := gw.Expect().(*packet.Puback); !ok {
				t.Fatalf("publish %s not acknowledged", topic)
			}
		}
	}
	publish("A/private/0")
	first := c.ExpectPublish() // left unacknowledged
	publish("A/private/1", "A/public/1")
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool {
		st, ok := b.ClientStatsIn("A", "dev-1")
		return ok && st.Queued == 2
	}, "two messages queued")

	// The users file gives dev narrower roles; the Service reloads it.
	if err := os.WriteFile(uf, []byte("users:\n"+usersWith("PUBLIC_READ")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	reauth := func(nonce string) {
		t.Helper()
		sc := &scramClient{user: "dev", pass: "s3cret", cnonce: nonce}
		re := &packet.Auth{ReasonCode: packet.ReAuthenticate}
		scramMethod(&re.Properties, sc.clientFirst())
		if done, ok := scramRoundTrip(t, c, re, sc).(*packet.Auth); !ok || done.ReasonCode != packet.Success {
			t.Fatalf("re-authentication: want AUTH 0x00, got %+v", done)
		}
	}
	reauth("second-nonce-0123456789")
	if st := b.Stats(); st.Revocations != 1 || st.RevokedMessages != 1 {
		t.Fatalf("Stats: %d revocations, %d revoked messages; want 1 (A/#) and 1 (A/private/1)", st.Revocations, st.RevokedMessages)
	}

	c.Send(&packet.Puback{PacketID: first.PacketID})
	expectOnly := func(want string) {
		t.Helper()
		p := c.ExpectPublish()
		if p.Topic != want {
			t.Fatalf("got %q, want %q", p.Topic, want)
		}
		c.Send(&packet.Puback{PacketID: p.PacketID})
		c.ExpectNone(300 * time.Millisecond)
	}
	expectOnly("A/public/1")
	publish("A/private/2", "A/public/2")
	expectOnly("A/public/2")

	// The same identity again: nothing to decide.
	reauth("third-nonce-0123456789")
	if st := b.Stats(); st.Revocations != 1 || st.RevokedMessages != 1 {
		t.Fatalf("after a re-authentication changing nothing: %d revocations, %d revoked messages", st.Revocations, st.RevokedMessages)
	}
	if cs, _ := b.ClientStatsIn("A", "dev-1"); cs.Subscriptions != 1 {
		t.Fatalf("%d subscriptions left, want 1 (A/public/#)", cs.Subscriptions)
	}
}
