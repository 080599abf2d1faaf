package interop_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/diskstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// Client ids are a namespace per tenant (DESIGN.md section 3): tenants A
// and B may each have a meter-001, and nothing one of them does reaches
// the other's session. The identities come from a real auth.Service: a
// users file (alice in A, bob in B, password) and JWTs.

const sessSecret = "tenant-session-test-secret-0123456789"

// tenantCreds are the credentials of one client of the fixture.
type tenantCreds struct {
	user string
	pass []byte
}

// sessionFixture is a two-tenant auth.Service whose role lets each tenant
// publish and subscribe under its own tenant level and under common/.
type sessionFixture struct {
	options broker.Options
	creds   map[string]tenantCreds // "A", "B" (users file), "B-jwt"
}

func newSessionFixture(t *testing.T) *sessionFixture {
	t.Helper()
	dir := t.TempDir()
	ha, _ := auth.HashBcrypt([]byte("alice-pw"), 4)
	hb, _ := auth.HashBcrypt([]byte("bob-pw"), 4)
	users := filepath.Join(dir, "users.yaml")
	data := "users:\n" +
		"  - {username: alice, password: '" + ha + "', tenant: A, roles: [TENANT_RW]}\n" +
		"  - {username: bob, password: '" + hb + "', tenant: B, roles: [TENANT_RW]}\n"
	if err := os.WriteFile(users, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	roles := []auth.Role{{Name: "TENANT_RW", Activity: auth.ActivityBoth, MaxQoS: 2, Topics: []string{"{tenantId}/#", "common/#"}}}
	svc, err := auth.New(auth.Config{UsersFile: users, JWT: auth.JWTConfig{Secret: sessSecret, KID: "k1"}, Roles: roles},
		auth.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tk := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "B", "mqttScope": []string{"TENANT_RW"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	tk.Header["kid"] = "k1"
	tokB, err := tk.SignedString([]byte(sessSecret))
	if err != nil {
		t.Fatal(err)
	}
	return &sessionFixture{
		options: broker.Options{Authenticator: svc, Authorizer: svc},
		creds: map[string]tenantCreds{
			"A":     {"alice", []byte("alice-pw")},
			"B":     {"bob", []byte("bob-pw")},
			"B-jwt": {"", []byte(tokB)},
		},
	}
}

// connect connects as who with client id; persistent asks for a session
// that outlives the connection (3.1.1 clean session 0, 5.0 an expiry
// interval), clean for a 5.0 clean start (3.1.1 has none: a persistent
// session is resumed, a clean one discards the old). It returns the client and
// its CONNACK, failing the test on a refusal.
func (f *sessionFixture) connect(t *testing.T, addr string, v packet.Version, who, id string, persistent, clean bool, will *packet.Will) (*mqtttest.Client, *packet.Connack) {
	t.Helper()
	cr := f.creds[who]
	c := mqtttest.Dial(t, addr, v)
	p := &packet.Connect{ClientID: id, CleanStart: clean, KeepAlive: 60, Will: will,
		Username: cr.user, UsernameFlag: cr.user != "" || v != packet.V5, Password: cr.pass, PasswordFlag: true}
	if v == packet.V5 && persistent {
		p.Properties.SessionExpiryInterval = 3600
		p.Properties.Set(packet.PropSessionExpiryInterval)
	}
	if v != packet.V5 {
		p.CleanStart = !persistent // 3.x: clean session 0 is what persists
	}
	ack := c.Connect(p)
	if ack.ReasonCode != packet.Success {
		t.Fatalf("%s as %s: CONNACK %v", id, who, ack.ReasonCode)
	}
	return c, ack
}

// publish1 publishes a QoS 1 message and waits for its PUBACK.
func publish1(t *testing.T, c *mqtttest.Client, pid uint16, topic, payload string) {
	t.Helper()
	c.Send(&packet.Publish{Topic: topic, QoS: 1, PacketID: pid, Payload: []byte(payload)})
	if ack, ok := c.Expect().(*packet.Puback); !ok || ack.ReasonCode.IsError() {
		t.Fatalf("publish %s: no PUBACK: %+v", topic, ack)
	}
}

// expectPayloads reads PUBLISHes (acknowledging QoS 1) until it has the
// payloads want, in order, then makes sure nothing else comes.
func expectPayloads(t *testing.T, c *mqtttest.Client, who string, want ...string) {
	t.Helper()
	for _, w := range want {
		p := c.ExpectPublish()
		if string(p.Payload) != w {
			t.Fatalf("%s got %q on %s, want %q", who, p.Payload, p.Topic, w)
		}
		if p.QoS == 1 {
			c.Send(&packet.Puback{PacketID: p.PacketID})
		}
	}
	c.ExpectNone(200 * time.Millisecond)
}

// alive fails the test unless c still answers PINGREQ (it was not closed
// or taken over).
func alive(t *testing.T, c *mqtttest.Client, who string) {
	t.Helper()
	c.Send(&packet.Pingreq{})
	p, err := c.Read(mqtttest.Timeout)
	if err != nil {
		t.Fatalf("%s: connection lost: %v", who, err)
	}
	if _, ok := p.(*packet.Pingresp); !ok {
		t.Fatalf("%s: got %s %+v, want PINGRESP", who, p.Type(), p)
	}
}

func disconnect(t *testing.T, c *mqtttest.Client) {
	t.Helper()
	c.Send(&packet.Disconnect{})
	c.ExpectClosed()
}

var bothVersions = []packet.Version{packet.V311, packet.V5}

// TestTenantClientIDDoesNotResumeAnotherTenant: tenant B (by password or
// JWT) connecting with tenant A's client id and clean 0 gets a new session
// (session present 0 [MQTT-3.2.2-2] applies to B's own namespace), none of
// A's queued or live messages, and neither connection takes the other over.
// Within tenant B a second connection still takes B's over [MQTT-3.1.4-2].
func TestTenantClientIDDoesNotResumeAnotherTenant(t *testing.T) {
	for _, v := range bothVersions {
		for _, asB := range []string{"B", "B-jwt"} {
			t.Run(v.String()+"/"+asB, func(t *testing.T) {
				f := newSessionFixture(t)
				_, addr := mqtttest.StartBroker(t, f.options)
				pubA, _ := f.connect(t, addr, v, "A", "pub-a", false, true, nil)

				a, _ := f.connect(t, addr, v, "A", "meter-001", true, true, nil)
				a.Subscribe(1, packet.Subscription{Filter: "A/meter/#", QoS: 1})
				disconnect(t, a)
				publish1(t, pubA, 1, "A/meter/1", "queued-for-A")

				b, ack := f.connect(t, addr, v, asB, "meter-001", true, false, nil)
				if ack.SessionPresent {
					t.Fatal("tenant B resumed tenant A's session (session present 1)")
				}
				b.ExpectNone(200 * time.Millisecond)

				a, ack = f.connect(t, addr, v, "A", "meter-001", true, false, nil)
				if !ack.SessionPresent {
					t.Fatal("tenant A's session is gone after tenant B used its client id")
				}
				expectPayloads(t, a, "A", "queued-for-A")
				alive(t, b, "tenant B's meter-001 after A connected")

				publish1(t, pubA, 2, "A/meter/2", "live-for-A")
				expectPayloads(t, a, "A", "live-for-A")
				b.ExpectNone(100 * time.Millisecond)

				// Takeover within tenant B works as before; A is untouched.
				b2, ack := f.connect(t, addr, v, asB, "meter-001", true, false, nil)
				if !ack.SessionPresent {
					t.Fatal("tenant B's second connection did not resume B's session")
				}
				got := b.ExpectClosed()
				if v == packet.V5 {
					if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.SessionTakenOver {
						t.Fatalf("tenant B's first connection got %+v, want DISCONNECT 0x8E", got)
					}
				}
				alive(t, a, "tenant A's meter-001 after B's takeover")
				alive(t, b2, "tenant B's second meter-001")
			})
		}
	}
}

// TestTenantCleanStartKeepsAnotherTenantsSession: tenant B's clean start
// [MQTT-3.1.2-4] with tenant A's client id discards nothing of A's: A,
// offline, resumes with session present and its queued messages; A,
// online, is not disconnected.
func TestTenantCleanStartKeepsAnotherTenantsSession(t *testing.T) {
	for _, v := range bothVersions {
		t.Run(v.String(), func(t *testing.T) {
			f := newSessionFixture(t)
			_, addr := mqtttest.StartBroker(t, f.options)
			pubA, _ := f.connect(t, addr, v, "A", "pub-a", false, true, nil)

			a, _ := f.connect(t, addr, v, "A", "meter-001", true, true, nil)
			a.Subscribe(1, packet.Subscription{Filter: "A/meter/#", QoS: 1})
			disconnect(t, a)
			publish1(t, pubA, 1, "A/meter/1", "queued-for-A")

			b, _ := f.connect(t, addr, v, "B", "meter-001", false, true, nil)
			disconnect(t, b)

			a, ack := f.connect(t, addr, v, "A", "meter-001", true, false, nil)
			if !ack.SessionPresent {
				t.Fatal("tenant B's clean start discarded tenant A's session")
			}
			expectPayloads(t, a, "A", "queued-for-A")

			b, _ = f.connect(t, addr, v, "B", "meter-001", true, true, nil)
			alive(t, a, "tenant A's meter-001 after B's clean start")
			publish1(t, pubA, 2, "A/meter/2", "live-for-A")
			expectPayloads(t, a, "A", "live-for-A")
			b.ExpectNone(100 * time.Millisecond)
		})
	}
}

// TestTenantsSameClientIDOnlineTogether: both tenants' meter-001 stay
// connected side by side, each receiving only its own tenant's messages;
// No Local tells them apart too.
func TestTenantsSameClientIDOnlineTogether(t *testing.T) {
	for _, v := range bothVersions {
		t.Run(v.String(), func(t *testing.T) {
			f := newSessionFixture(t)
			_, addr := mqtttest.StartBroker(t, f.options)
			a, _ := f.connect(t, addr, v, "A", "meter-001", true, true, nil)
			b, _ := f.connect(t, addr, v, "B", "meter-001", true, true, nil)
			a.Subscribe(1, packet.Subscription{Filter: "A/cmd/#", QoS: 1})
			b.Subscribe(1, packet.Subscription{Filter: "B/cmd/#", QoS: 1})
			pubA, _ := f.connect(t, addr, v, "A", "pub", false, true, nil)
			pubB, _ := f.connect(t, addr, v, "B", "pub", false, true, nil)
			for i := range 3 {
				publish1(t, pubA, uint16(i+1), "A/cmd/x", fmt.Sprintf("a%d", i))
				publish1(t, pubB, uint16(i+1), "B/cmd/x", fmt.Sprintf("b%d", i))
			}
			expectPayloads(t, a, "tenant A", "a0", "a1", "a2")
			expectPayloads(t, b, "tenant B", "b0", "b1", "b2")
			alive(t, pubA, "tenant A's pub")
			alive(t, pubB, "tenant B's pub")
			if v != packet.V5 {
				return
			}
			// No Local [MQTT-3.8.3-3] spares the publisher's own session,
			// not the same client id in another tenant.
			for _, c := range []*mqtttest.Client{a, b} {
				c.Subscribe(2, packet.Subscription{Filter: "common/nl", QoS: 1, NoLocal: true})
			}
			publish1(t, a, 1, "common/nl", "from-A")
			expectPayloads(t, b, "tenant B (no local)", "from-A")
			a.ExpectNone(100 * time.Millisecond)
		})
	}
}

// TestShareGroupsArePerTenant: $share/g/common/feed joined by two members
// in tenant A and one in tenant B is two groups: each message goes once to
// A's group and once to B's (DESIGN.md section 3: share groups are per
// tenant), never split between the tenants.
func TestShareGroupsArePerTenant(t *testing.T) {
	for _, v := range bothVersions {
		t.Run(v.String(), func(t *testing.T) {
			f := newSessionFixture(t)
			_, addr := mqtttest.StartBroker(t, f.options)
			members := map[string]*mqtttest.Client{}
			for _, m := range []struct{ who, id string }{{"A", "a1"}, {"A", "a2"}, {"B", "b1"}} {
				c, _ := f.connect(t, addr, v, m.who, m.id, false, true, nil)
				if codes := c.Subscribe(1, packet.Subscription{Filter: "$share/g/common/feed", QoS: 1}); codes[0] != packet.GrantedQoS1 {
					t.Fatalf("%s: SUBACK %v", m.id, codes)
				}
				members[m.id] = c
			}
			pub, _ := f.connect(t, addr, v, "A", "feeder", false, true, nil)
			const n = 6
			for i := range n {
				publish1(t, pub, uint16(i+1), "common/feed", fmt.Sprint(i))
			}
			count := func(c *mqtttest.Client) int {
				k := 0
				for {
					p, err := c.Read(300 * time.Millisecond)
					if err != nil {
						return k
					}
					if pub, ok := p.(*packet.Publish); ok {
						k++
						c.Send(&packet.Puback{PacketID: pub.PacketID})
					}
				}
			}
			a1, a2, b1 := count(members["a1"]), count(members["a2"]), count(members["b1"])
			if b1 != n || a1+a2 != n {
				t.Fatalf("tenant A's group got %d+%d, tenant B's %d of %d messages; want %d each", a1, a2, b1, n, n)
			}
		})
	}
}

// TestTenantSessionsSurviveRestart: with the disk store, the same client id
// in two tenants is restored as two sessions, each with its own queued
// messages and its own share group.
func TestTenantSessionsSurviveRestart(t *testing.T) {
	for _, v := range bothVersions {
		t.Run(v.String(), func(t *testing.T) {
			f := newSessionFixture(t)
			dir := t.TempDir()
			st, err := diskstore.Open(dir, diskstore.Options{Sync: diskstore.SyncNone, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			o := f.options
			o.Store = st
			b, addr := mqtttest.StartBroker(t, o)
			for _, who := range []string{"A", "B"} {
				c, _ := f.connect(t, addr, v, who, "meter-001", true, true, nil)
				c.Subscribe(1, packet.Subscription{Filter: who + "/meter/#", QoS: 1},
					packet.Subscription{Filter: "$share/g/common/feed", QoS: 1})
				disconnect(t, c)
			}
			for _, who := range []string{"A", "B"} {
				p, _ := f.connect(t, addr, v, who, "pub", false, true, nil)
				publish1(t, p, 1, who+"/meter/1", "queued-for-"+who)
				disconnect(t, p)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st, err = diskstore.Open(dir, diskstore.Options{Sync: diskstore.SyncNone, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() }) // after the broker's shutdown (cleanups run last first)
			o.Store = st
			_, addr = mqtttest.StartBroker(t, o)

			clients := map[string]*mqtttest.Client{}
			for _, who := range []string{"A", "B"} {
				c, ack := f.connect(t, addr, v, who, "meter-001", true, false, nil)
				if !ack.SessionPresent {
					t.Fatalf("tenant %s's meter-001 not restored", who)
				}
				expectPayloads(t, c, "tenant "+who, "queued-for-"+who)
				clients[who] = c
			}
			feeder, _ := f.connect(t, addr, v, "A", "feeder", false, true, nil)
			publish1(t, feeder, 1, "common/feed", "feed")
			expectPayloads(t, clients["A"], "tenant A's group member", "feed")
			expectPayloads(t, clients["B"], "tenant B's group member", "feed")
		})
	}
}

// TestDelayedWillSurvivesAnotherTenantsClientID: tenant A's delayed will
// [MQTT-3.1.3-9] is cancelled only by A's session being resumed, not by
// tenant B connecting with the same client id.
func TestDelayedWillSurvivesAnotherTenantsClientID(t *testing.T) {
	for _, vb := range bothVersions {
		t.Run("B "+vb.String(), func(t *testing.T) {
			f := newSessionFixture(t)
			_, addr := mqtttest.StartBroker(t, f.options)
			watch, _ := f.connect(t, addr, packet.V5, "A", "watch", false, true, nil)
			watch.Subscribe(1, packet.Subscription{Filter: "A/will", QoS: 1})

			will := &packet.Will{Topic: "A/will", Payload: []byte("A is gone"), QoS: 1}
			will.Properties.WillDelayInterval = 1
			will.Properties.Set(packet.PropWillDelayInterval)
			a, _ := f.connect(t, addr, packet.V5, "A", "meter-001", true, true, will)
			_ = a.Conn.Close() // an abnormal end: the will is due after its delay

			b, _ := f.connect(t, addr, vb, "B", "meter-001", true, false, nil)
			p := watch.ExpectPublish() // within mqtttest.Timeout, well past the 1 s delay
			if p.Topic != "A/will" || string(p.Payload) != "A is gone" {
				t.Fatalf("watcher got %s %q, want tenant A's will", p.Topic, p.Payload)
			}
			alive(t, b, "tenant B's meter-001")
		})
	}
}
