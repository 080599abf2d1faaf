package auth

import (
	"fmt"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestReauthenticationNeverChangesIdentity: a 5.0 SCRAM re-authentication
// (AUTH 0x19) that proves another user's password, of another tenant or
// of the same one, ends the connection with DISCONNECT 0x87
// [MQTT-4.12.1-2] and nothing more is delivered on it; the same user
// re-authenticating gets AUTH 0x00 and keeps its subscriptions
// [MQTT-4.12.1-1].
func TestReauthenticationNeverChangesIdentity(t *testing.T) {
	var entries []string
	for _, u := range []struct{ name, tenant string }{{"alice", "A"}, {"alice2", "A"}, {"bob", "B"}} {
		cr, err := NewSCRAMCredentials([]byte(u.name+"-pw"), 0)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, fmt.Sprintf("  - {username: %s, scram_sha256: '%s', tenant: %s, roles: [RW]}\n", u.name, cr, u.tenant))
	}
	ph, err := HashBcrypt([]byte("pub-pw"), 4)
	if err != nil {
		t.Fatal(err)
	}
	entries = append(entries, "  - {username: pub, password: '"+ph+"', tenant: A, roles: [RW]}\n")
	s := newService(t, Config{UsersFile: writeUsers(t, entries...),
		Roles: []Role{{Name: "RW", Activity: ActivityBoth, MaxQoS: 1, Topics: []string{"{tenantId}/#"}}}})
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: s, Authorizer: s})

	withMethod := func(p *packet.Properties, data []byte) {
		p.AuthenticationMethod = SCRAMMethod
		p.Set(packet.PropAuthenticationMethod)
		p.AuthenticationData = data
		p.Set(packet.PropAuthenticationData)
	}
	// scram runs an exchange that first's packet starts and returns the
	// packet that ends it.
	scram := func(c *mqtttest.Client, first packet.Packet, sc *scramClient) packet.Packet {
		t.Helper()
		c.Send(first)
		cont, ok := c.Expect().(*packet.Auth)
		if !ok || cont.ReasonCode != packet.ContinueAuthentication {
			t.Fatalf("want AUTH 0x18 with server-first, got %+v", cont)
		}
		a := &packet.Auth{ReasonCode: packet.ContinueAuthentication}
		withMethod(&a.Properties, sc.clientFinal(t, cont.Properties.AuthenticationData))
		c.Send(a)
		return c.Expect()
	}
	pub := mqtttest.Dial(t, addr, packet.V5)
	if ack := pub.Connect(&packet.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 60,
		Username: "pub", UsernameFlag: true, Password: []byte("pub-pw"), PasswordFlag: true}); ack.ReasonCode != packet.Success {
		t.Fatalf("publisher: CONNACK %v", ack.ReasonCode)
	}
	pid := uint16(0)
	publish := func(payload string) {
		t.Helper()
		pid++
		pub.Send(&packet.Publish{Topic: "A/t/x", QoS: 1, PacketID: pid, Payload: []byte(payload)})
		if _, ok := pub.Expect().(*packet.Puback); !ok {
			t.Fatal("publisher: no PUBACK")
		}
	}

	tests := []struct {
		name   string
		as     string // the user the re-authentication proves
		refuse bool
	}{
		{"other tenant", "bob", true},
		{"same tenant, other user", "alice2", true},
		{"same user", "alice", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mqtttest.Dial(t, addr, packet.V5)
			sc := &scramClient{user: "alice", pass: "alice-pw", cnonce: fmt.Sprintf("connect-nonce-%d-abcdef", i)}
			con := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: fmt.Sprintf("dev-%d", i), CleanStart: true, KeepAlive: 60}
			withMethod(&con.Properties, sc.clientFirst())
			if ack, ok := scram(c, con, sc).(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
				t.Fatalf("SCRAM CONNECT as alice: got %+v", ack)
			}
			if codes := c.Subscribe(1, packet.Subscription{Filter: "A/t/#", QoS: 1}); codes[0] != packet.GrantedQoS1 {
				t.Fatalf("SUBACK %v", codes)
			}

			re := &packet.Auth{ReasonCode: packet.ReAuthenticate}
			sc2 := &scramClient{user: tt.as, pass: tt.as + "-pw", cnonce: fmt.Sprintf("reauth-nonce-%d-abcdef", i)}
			withMethod(&re.Properties, sc2.clientFirst())
			end := scram(c, re, sc2)
			publish(tt.name)
			if tt.refuse {
				d, ok := end.(*packet.Disconnect)
				if !ok || d.ReasonCode != packet.NotAuthorized {
					t.Fatalf("re-authentication as %s: got %+v, want DISCONNECT 0x87", tt.as, end)
				}
				if got := c.ExpectClosed(); len(got) != 0 {
					t.Fatalf("after DISCONNECT 0x87 got %+v, want nothing but the close", got)
				}
				return
			}
			if a, ok := end.(*packet.Auth); !ok || a.ReasonCode != packet.Success || !sc2.checkServerFinal(a.Properties.AuthenticationData) {
				t.Fatalf("same-user re-authentication: got %+v, want AUTH 0x00 with server-final", end)
			}
			if p := c.ExpectPublish(); string(p.Payload) != tt.name {
				t.Fatalf("got %q, want %q: the subscription did not survive re-authentication", p.Payload, tt.name)
			}
			c.ExpectNone(100 * time.Millisecond)
		})
	}
}
