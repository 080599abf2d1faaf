package auth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// expectRevoked checks that c's connection was closed as one whose
// credentials are no longer accepted: a 5.0 client is sent DISCONNECT
// 0x87 first [MQTT-3.14.2-1], a 3.1.1 client is closed without a packet.
func expectRevoked(t *testing.T, who string, c *mqtttest.Client) {
	t.Helper()
	got := c.ExpectClosed()
	if c.Version != packet.V5 {
		if len(got) != 0 {
			t.Errorf("%s (3.1.1): got %d packets before the close, want none", who, len(got))
		}
		return
	}
	if len(got) != 1 {
		t.Fatalf("%s: got %d packets before the close, want one DISCONNECT", who, len(got))
	}
	if d, ok := got[0].(*packet.Disconnect); !ok || d.ReasonCode != packet.NotAuthorized {
		t.Errorf("%s: got %+v, want DISCONNECT 0x87", who, got[0])
	}
}

// expectAlive checks that c's connection is open: PINGREQ gets PINGRESP.
func expectAlive(t *testing.T, who string, c *mqtttest.Client) {
	t.Helper()
	c.Send(&packet.Pingreq{})
	p, err := c.Read(mqtttest.Timeout)
	if err != nil {
		t.Fatalf("%s: connection lost after the reload: %v", who, err)
	}
	if _, ok := p.(*packet.Pingresp); !ok {
		t.Fatalf("%s: got %s, want PINGRESP", who, p.Type())
	}
}

// TestReloadClosesRemovedAndChangedUsers: after a reload of the users
// file, the live connections of a user removed from it, of a user whose
// password changed and of a user moved to another tenant are closed (5.0:
// DISCONNECT 0x87; 3.1.1: closed), counted and not published their wills;
// a user whose entry only gained a role keeps its connection. The old
// password is refused afterwards and the new one accepted.
func TestReloadClosesRemovedAndChangedUsers(t *testing.T) {
	hash := func(pw string) string {
		h, err := HashBcrypt([]byte(pw), 4)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	entry := func(name, h, tenant, roles string) string {
		return fmt.Sprintf("  - {username: %s, password: '%s', tenant: %s, roles: [%s]}\n", name, h, tenant, roles)
	}
	old := map[string]string{"gone": hash("pw-gone"), "changed": hash("pw-old"), "moved": hash("pw-moved"), "kept": hash("pw-kept"), "watcher": hash("pw-w")}
	users := func(changed, movedTo, keptRoles string, withGone bool) string {
		s := entry("changed", changed, "A", "RW") + entry("moved", old["moved"], movedTo, "RW") +
			entry("kept", old["kept"], "A", keptRoles) + entry("watcher", old["watcher"], "A", "RW")
		if withGone {
			s += entry("gone", old["gone"], "A", "RW")
		}
		return s
	}
	uf := writeUsers(t, users(old["changed"], "A", "RW", true))
	cfg := Config{UsersFile: uf, Roles: []Role{
		{Name: "RW", Activity: ActivityBoth, MaxQoS: 1, Topics: []string{"{tenantId}/#"}},
		{Name: "EXTRA", Activity: ActivitySubscribe, MaxQoS: 1, Topics: []string{"shared/#"}},
	}}
	s := newService(t, cfg)
	b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: s, Authorizer: s})

	login := func(t *testing.T, v packet.Version, name, pw, will string) (*mqtttest.Client, packet.ReasonCode) {
		t.Helper()
		c := mqtttest.Dial(t, addr, v)
		con := &packet.Connect{ClientID: name + v.String(), CleanStart: true, KeepAlive: 60,
			Username: name, UsernameFlag: true, Password: []byte(pw), PasswordFlag: true}
		if will != "" {
			con.Will = &packet.Will{Topic: will, Payload: []byte("will of " + name)}
		}
		return c, c.Connect(con).ReasonCode
	}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			if err := os.WriteFile(uf, []byte("users:\n"+users(old["changed"], "A", "RW", true)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := s.Reload(cfg); err != nil {
				t.Fatal(err)
			}
			watcher, code := login(t, packet.V5, "watcher", "pw-w", "")
			if code != packet.Success {
				t.Fatalf("watcher CONNACK %v", code)
			}
			watcher.Subscribe(1, packet.Subscription{Filter: "A/will/#"})
			conns := map[string]*mqtttest.Client{}
			for name, pw := range map[string]string{"gone": "pw-gone", "changed": "pw-old", "moved": "pw-moved", "kept": "pw-kept"} {
				c, code := login(t, v, name, pw, "A/will/"+name)
				if code != packet.Success {
					t.Fatalf("%s CONNACK %v", name, code)
				}
				conns[name] = c
			}
			before := b.Stats().CredentialRevocations

			// gone removed, changed's password replaced, moved to tenant
			// B, kept gains a role.
			if err := os.WriteFile(uf, []byte("users:\n"+users(hash("pw-new"), "B", "RW, EXTRA", false)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := s.Reload(cfg); err != nil {
				t.Fatal(err)
			}
			b.Reauthorize()

			for _, name := range []string{"gone", "changed", "moved"} {
				expectRevoked(t, name, conns[name])
			}
			expectAlive(t, "kept", conns["kept"])
			if n := b.Stats().CredentialRevocations - before; n != 3 {
				t.Errorf("CredentialRevocations grew by %d, want 3", n)
			}
			// The wills of the closed connections are not published.
			watcher.ExpectNone(300 * time.Millisecond)

			if _, code := login(t, v, "changed", "pw-old", ""); code == packet.Success {
				t.Errorf("the old password still connects after the change")
			}
			c, code := login(t, v, "changed", "pw-new", "")
			if code != packet.Success {
				t.Errorf("the new password: CONNACK %v", code)
			}
			_ = c.Conn.Close() // the next run re-hashes its password
			conns["kept"].Send(&packet.Disconnect{})
			watcher.Send(&packet.Disconnect{})
		})
	}
}

// TestReloadClosesTokensOfRemovedKeys: a JWKS of two HS256 keys, k1 and
// k2, is reloaded with k1 rotated out (its kid now names new key
// material) and k2 kept. A connection whose token k1 signed is closed
// (5.0: DISCONNECT 0x87; 3.1.1: closed); connections whose tokens k2
// signed, named by kid or not, stay open and keep their roles (their
// subscription still delivers). Reloading the same keys again closes
// nothing; a reload that turns JWT authentication off closes every token
// connection.
func TestReloadClosesTokensOfRemovedKeys(t *testing.T) {
	secret1, secret1b, secret2 := "k1-secret-0123456789abcdef0123456789", "k1-rotated-0123456789abcdef012345678", "k2-secret-0123456789abcdef0123456789"
	jwks := func(s1 string) string {
		b64 := base64.RawURLEncoding
		data, err := json.Marshal(map[string]any{"keys": []map[string]string{
			{"kty": "oct", "kid": "k1", "alg": "HS256", "k": b64.EncodeToString([]byte(s1))},
			{"kty": "oct", "kid": "k2", "alg": "HS256", "k": b64.EncodeToString([]byte(secret2))},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	jf := writeFile(t, "jwks.json", []byte(jwks(secret1)))
	cfg := Config{JWT: JWTConfig{JWKSFile: jf}, Roles: []Role{
		{Name: "RW", Activity: ActivityBoth, MaxQoS: 1, Topics: []string{"{tenantId}/#"}},
	}}
	s := newService(t, cfg)
	b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: s, Authorizer: s})
	reload := func(s1 string) {
		t.Helper()
		if err := os.WriteFile(jf, []byte(jwks(s1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		b.Reauthorize()
	}
	login := func(t *testing.T, v packet.Version, id, token string) *mqtttest.Client {
		t.Helper()
		c := mqtttest.Dial(t, addr, v)
		if ack := c.Connect(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 60,
			Password: []byte(token), PasswordFlag: true, UsernameFlag: true, Username: "t"}); ack.ReasonCode != packet.Success {
			t.Fatalf("%s CONNACK %v", id, ack.ReasonCode)
		}
		return c
	}
	tok := func(secret, kid string) string {
		return sign(t, jwt.SigningMethodHS256, []byte(secret), claims("A", "RW"), kid)
	}

	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			reload(secret1)
			byK1 := login(t, v, "k1", tok(secret1, "k1"))
			byK2 := login(t, v, "k2", tok(secret2, "k2"))
			noKID := login(t, v, "nokid", tok(secret2, ""))
			byK2.Subscribe(1, packet.Subscription{Filter: "A/feed", QoS: 1})
			before := b.Stats().CredentialRevocations

			reload(secret1) // the same keys: nothing to close
			expectAlive(t, "k1 before the rotation", byK1)
			if n := b.Stats().CredentialRevocations - before; n != 0 {
				t.Fatalf("a reload with the same keys closed %d connections", n)
			}

			reload(secret1b) // k1 rotated out
			expectRevoked(t, "token signed by the removed key", byK1)
			expectAlive(t, "token of k2 (kid)", byK2)
			expectAlive(t, "token of k2 (no kid)", noKID)
			if n := b.Stats().CredentialRevocations - before; n != 1 {
				t.Errorf("CredentialRevocations grew by %d, want 1", n)
			}
			// A token of the kept key keeps its roles: its subscription
			// still delivers.
			noKID.Send(&packet.Publish{Topic: "A/feed", QoS: 1, PacketID: 7, Payload: []byte("still")})
			if _, ok := noKID.Expect().(*packet.Puback); !ok {
				t.Fatal("publish of the kept token not acknowledged")
			}
			if p := byK2.ExpectPublish(); string(p.Payload) != "still" {
				t.Fatalf("got %q", p.Payload)
			}
			// The old token of k1 no longer connects.
			c := mqtttest.Dial(t, addr, v)
			if ack := c.Connect(&packet.Connect{ClientID: "k1-again", CleanStart: true, Password: []byte(tok(secret1, "k1")),
				PasswordFlag: true, UsernameFlag: true, Username: "t"}); ack.ReasonCode == packet.Success {
				t.Error("a token of the removed key connects")
			}

			// JWT authentication turned off: no token is accepted any more.
			if err := s.Reload(Config{Roles: cfg.Roles}); err != nil {
				t.Fatal(err)
			}
			b.Reauthorize()
			expectRevoked(t, "token of k2 (kid), JWT off", byK2)
			expectRevoked(t, "token of k2 (no kid), JWT off", noKID)
		})
	}
}

// TestReloadClosesChangedSCRAMUser: the SCRAM-SHA-256 credentials of a
// user connected by enhanced authentication are replaced (a new
// password): the reload closes its connection with DISCONNECT 0x87; a
// reload that leaves them as they are keeps it.
func TestReloadClosesChangedSCRAMUser(t *testing.T) {
	cred := func(pw string) SCRAMCredentials {
		c, err := NewSCRAMCredentials([]byte(pw), 0)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	users := func(c SCRAMCredentials) string {
		return fmt.Sprintf("users:\n  - {username: dev, scram_sha256: '%s', tenant: A, roles: [RW]}\n", c)
	}
	old := cred("s3cret")
	uf := writeFile(t, "users.yaml", []byte(users(old)))
	cfg := Config{UsersFile: uf, Roles: []Role{{Name: "RW", Activity: ActivityBoth, MaxQoS: 1, Topics: []string{"{tenantId}/#"}}}}
	s := newService(t, cfg)
	b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: s, Authorizer: s})
	reload := func(c SCRAMCredentials) {
		t.Helper()
		if err := os.WriteFile(uf, []byte(users(c)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		b.Reauthorize()
	}
	c := mqtttest.Dial(t, addr, packet.V5)
	sc := &scramClient{user: "dev", pass: "s3cret", cnonce: "nonce-0123456789abcdef"}
	con := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "dev-1", CleanStart: true, KeepAlive: 60}
	scramMethod(&con.Properties, sc.clientFirst())
	if ack, ok := scramRoundTrip(t, c, con, sc).(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
		t.Fatalf("want CONNACK success, got %+v", ack)
	}
	reload(old)
	expectAlive(t, "unchanged credentials", c)
	reload(cred("new-secret"))
	expectRevoked(t, "changed SCRAM credentials", c)
	if n := b.Stats().CredentialRevocations; n != 1 {
		t.Errorf("CredentialRevocations %d, want 1", n)
	}
}
