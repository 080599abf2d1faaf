package interop_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// The two-tenant set-up of issue 4: consumers of tenants A and B hold JWTs
// with the seeds' consumer roles; an internal gateway (users file) publishes
// A/read/<mac>/gas and B/read/<mac>/gas. Every way of reading across
// tenants is tried; nothing may cross and every refusal has its code.

const e2eSecret = "two-tenant-test-secret-0123456789abcdef"

type tenantFixture struct {
	svc     *auth.Service
	rsaKey  *rsa.PrivateKey
	rsaPEM  []byte
	tokens  map[string]string
	options broker.Options
}

func newTenantFixture(t *testing.T, unauthorizedPublish string) *tenantFixture {
	t.Helper()
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pubFile := filepath.Join(dir, "jwt.pub.pem")
	gwHash, _ := auth.HashBcrypt([]byte("gw-password"), 4)
	users := filepath.Join(dir, "users.yaml")
	for name, data := range map[string][]byte{
		pubFile: pubPEM,
		users:   []byte("users:\n  - {username: gateway, password: '" + gwHash + "', roles: [INTERNAL_GATEWAY]}\n"),
	} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roles := append(auth.DefaultRoles(),
		auth.Role{Name: "INTERNAL_GATEWAY", Activity: auth.ActivityPublish, MaxQoS: 1, Topics: []string{"+/read/#", "+/alert/#"}},
		auth.Role{Name: "OWN_DEVICE", Activity: auth.ActivitySubscribe, MaxQoS: 1, Topics: []string{"{tenantId}/dev/{clientId}/#"}},
	)
	svc, err := auth.New(auth.Config{
		UsersFile: users,
		JWT:       auth.JWTConfig{Secret: e2eSecret, KID: "hs1", PublicKeyFile: pubFile, ClockSkew: 5 * time.Second},
		Roles:     roles,
	}, auth.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f := &tenantFixture{svc: svc, rsaKey: key, rsaPEM: pubPEM, tokens: map[string]string{}}
	now := time.Now()
	valid := func(sub string, scope ...string) jwt.MapClaims {
		return jwt.MapClaims{"sub": sub, "mqttScope": scope, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	hs := func(c jwt.MapClaims, kid string, secret []byte) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	consumer := []string{"BUBBLE_UP_READ_CONSUMER", "BUBBLE_UP_ALARM_CONSUMER"}
	f.tokens["A"] = hs(valid("A", consumer...), "hs1", []byte(e2eSecret))
	f.tokens["B"] = hs(valid("B", consumer...), "hs1", []byte(e2eSecret))
	rs := jwt.NewWithClaims(jwt.SigningMethodRS256, valid("A", consumer...))
	if f.tokens["A-rs256"], err = rs.SignedString(key); err != nil {
		t.Fatal(err)
	}
	f.tokens["own-device"] = hs(valid("A", "OWN_DEVICE"), "hs1", []byte(e2eSecret))
	expired := valid("A", consumer...)
	expired["exp"] = now.Add(-time.Minute).Unix()
	f.tokens["expired"] = hs(expired, "hs1", []byte(e2eSecret))
	future := valid("A", consumer...)
	future["nbf"] = now.Add(time.Hour).Unix()
	f.tokens["not-yet-valid"] = hs(future, "hs1", []byte(e2eSecret))
	noExp := valid("A", consumer...)
	delete(noExp, "exp")
	f.tokens["no-exp"] = hs(noExp, "hs1", []byte(e2eSecret))
	f.tokens["forged"] = hs(valid("B", consumer...), "hs1", []byte("attacker-secret-0123456789abcdefghij"))
	f.tokens["unknown-kid"] = hs(valid("B", consumer...), "hs9", []byte(e2eSecret))
	f.tokens["confused"] = hs(valid("B", consumer...), "", pubPEM) // HS256 keyed with the RSA public key
	b64 := base64.RawURLEncoding
	seg := func(v any) string { b, _ := json.Marshal(v); return b64.EncodeToString(b) }
	f.tokens["alg-none"] = seg(map[string]string{"alg": "none", "typ": "JWT"}) + "." + seg(valid("B", consumer...)) + "."
	parts := strings.Split(f.tokens["A"], ".")
	f.tokens["tampered"] = parts[0] + "." + seg(valid("B", consumer...)) + "." + parts[2]
	for name, sub := range map[string]string{"sub-hash": "A/#", "sub-plus": "A+", "sub-wild": "+", "sub-empty": "", "sub-slash": "A/read", "sub-nul": "A\x00"} {
		f.tokens[name] = hs(valid(sub, consumer...), "hs1", []byte(e2eSecret))
	}
	f.options = broker.Options{Authenticator: svc, Authorizer: svc, UnauthorizedPublish: unauthorizedPublish}
	return f
}

func dialAs(t *testing.T, addr string, v packet.Version, clientID, user string, pass []byte, will *packet.Will) (*mqtttest.Client, *packet.Connack) {
	t.Helper()
	c := mqtttest.Dial(t, addr, v)
	ack := c.Connect(&packet.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 60,
		Username: user, UsernameFlag: user != "" || (pass != nil && v != packet.V5),
		Password: pass, PasswordFlag: pass != nil, Will: will})
	return c, ack
}

func mustConnect(t *testing.T, addr string, v packet.Version, clientID, user string, pass []byte) *mqtttest.Client {
	t.Helper()
	c, ack := dialAs(t, addr, v, clientID, user, pass, nil)
	if ack.ReasonCode != packet.Success {
		t.Fatalf("%s: CONNACK %v, want success", clientID, ack.ReasonCode)
	}
	return c
}

// refusedSub is the SUBACK code of a refused filter: 0x80 in 3.x, 0x87 in 5.0.
func refusedSub(v packet.Version) packet.ReasonCode {
	if v == packet.V5 {
		return packet.NotAuthorized
	}
	return 0x80
}

func TestTwoTenantIsolation(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			f := newTenantFixture(t, "")
			_, addr := mqtttest.StartBroker(t, f.options)

			a := mustConnect(t, addr, v, "consumer-a", "", []byte(f.tokens["A"]))
			b := mustConnect(t, addr, v, "consumer-b", "", []byte(f.tokens["B"]))
			a2 := mustConnect(t, addr, v, "consumer-a-rs", "", []byte(f.tokens["A-rs256"]))
			gw := mustConnect(t, addr, v, "gw-1", "gateway", []byte("gw-password"))

			// Own tenant: granted, QoS capped at the role's max (1).
			attacks := []string{"#", "+/read/#", "+/+/+/gas", "+/#", "B/read/#", "B/#", "A/#", "$share/g/#",
				"$share/g/B/read/#", "$share/g/+/read/#", "$SYS/#", "$SYS/broker/clients", "B/read/+/gas", "+/alert/#"}
			subs := []packet.Subscription{{Filter: "A/read/#", QoS: 2}, {Filter: "A/alert/#", QoS: 1}}
			for _, f := range attacks {
				subs = append(subs, packet.Subscription{Filter: f, QoS: 1})
			}
			codes := a.Subscribe(1, subs...)
			if codes[0] != packet.GrantedQoS1 || codes[1] != packet.GrantedQoS1 {
				t.Fatalf("own filters: %v, want QoS 1 granted (requested 2 capped to the role's 1)", codes[:2])
			}
			for i, f := range attacks {
				if codes[i+2] != refusedSub(v) {
					t.Errorf("consumer A subscribing %q: code 0x%02X, want 0x%02X", f, byte(codes[i+2]), byte(refusedSub(v)))
				}
			}
			if c := a2.Subscribe(1, packet.Subscription{Filter: "A/read/+/gas", QoS: 1}, packet.Subscription{Filter: "$share/g/A/read/#", QoS: 1}); c[0] != packet.GrantedQoS1 || c[1] != packet.GrantedQoS1 {
				t.Fatalf("A (RS256 token): %v", c)
			}
			if c := b.Subscribe(1, packet.Subscription{Filter: "B/read/#", QoS: 1}, packet.Subscription{Filter: "A/read/#", QoS: 1}, packet.Subscription{Filter: "B/alert/#", QoS: 0}); c[0] != packet.GrantedQoS1 || c[1] != refusedSub(v) || c[2] != packet.Success {
				t.Fatalf("B: %v", c)
			}

			// The gateway publishes for both tenants.
			msgs := []struct{ topic, tenant string }{
				{"A/read/00:13:50:05:aa:01/gas", "A"}, {"B/read/00:13:50:05:bb:02/gas", "B"},
				{"A/alert/00:13:50:05:aa:01/leak", "A"}, {"B/alert/00:13:50:05:bb:02/leak", "B"},
			}
			for i, m := range msgs {
				gw.Send(&packet.Publish{Topic: m.topic, QoS: 1, PacketID: uint16(i + 1), Payload: []byte(m.tenant)})
				if ack, ok := gw.Expect().(*packet.Puback); !ok || ack.ReasonCode.IsError() {
					t.Fatalf("gateway publish %s not acknowledged: %+v", m.topic, ack)
				}
			}
			expectOnly := func(c *mqtttest.Client, who string, want ...string) {
				t.Helper()
				for _, topic := range want {
					p := c.ExpectPublish()
					if p.Topic != topic {
						t.Fatalf("%s got %q, want %q", who, p.Topic, topic)
					}
					if p.QoS == 1 {
						c.Send(&packet.Puback{PacketID: p.PacketID})
					}
				}
				c.ExpectNone(200 * time.Millisecond)
			}
			expectOnly(a, "consumer A", msgs[0].topic, msgs[2].topic)
			expectOnly(a2, "consumer A (shared, RS256)", msgs[0].topic, msgs[0].topic)
			expectOnly(b, "consumer B", msgs[1].topic, msgs[3].topic)
		})
	}
}

func TestTenantConnectRefusals(t *testing.T) {
	f := newTenantFixture(t, "")
	_, addr := mqtttest.StartBroker(t, f.options)
	tests := []struct {
		name     string
		clientID string
		user     string
		pass     []byte
		will     *packet.Will
		want     packet.ReasonCode // 5.0; 3.x gets ConnackReturnCode of it
	}{
		{"expired token", "c", "", []byte(f.tokens["expired"]), nil, packet.NotAuthorized},
		{"token not yet valid", "c", "", []byte(f.tokens["not-yet-valid"]), nil, packet.NotAuthorized},
		{"token without exp", "c", "", []byte(f.tokens["no-exp"]), nil, packet.NotAuthorized},
		{"forged signature", "c", "", []byte(f.tokens["forged"]), nil, packet.NotAuthorized},
		{"tampered payload", "c", "", []byte(f.tokens["tampered"]), nil, packet.NotAuthorized},
		{"alg none", "c", "", []byte(f.tokens["alg-none"]), nil, packet.NotAuthorized},
		{"algorithm confusion", "c", "", []byte(f.tokens["confused"]), nil, packet.NotAuthorized},
		{"unknown kid", "c", "", []byte(f.tokens["unknown-kid"]), nil, packet.NotAuthorized},
		{"sub A/#", "c", "", []byte(f.tokens["sub-hash"]), nil, packet.NotAuthorized},
		{"sub A+", "c", "", []byte(f.tokens["sub-plus"]), nil, packet.NotAuthorized},
		{"sub +", "c", "", []byte(f.tokens["sub-wild"]), nil, packet.NotAuthorized},
		{"sub empty", "c", "", []byte(f.tokens["sub-empty"]), nil, packet.NotAuthorized},
		{"sub A/read", "c", "", []byte(f.tokens["sub-slash"]), nil, packet.NotAuthorized},
		{"sub NUL", "c", "", []byte(f.tokens["sub-nul"]), nil, packet.NotAuthorized},
		{"client id #", "#", "", []byte(f.tokens["own-device"]), nil, packet.ClientIdentifierNotValid},
		{"client id +", "+", "", []byte(f.tokens["own-device"]), nil, packet.ClientIdentifierNotValid},
		{"client id with /", "x/#", "", []byte(f.tokens["own-device"]), nil, packet.ClientIdentifierNotValid},
		{"will on the other tenant", "c", "", []byte(f.tokens["A"]), &packet.Will{Topic: "B/read/x", Payload: []byte("x")}, packet.NotAuthorized},
		{"anonymous", "c", "", nil, nil, packet.NotAuthorized},
		{"wrong gateway password", "c", "gateway", []byte("nope"), nil, packet.BadUsernameOrPassword},
		{"unknown user", "c", "mallory", []byte("x"), nil, packet.BadUsernameOrPassword},
	}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		for _, tt := range tests {
			t.Run(v.String()+"/"+tt.name, func(t *testing.T) {
				c, ack := dialAs(t, addr, v, tt.clientID, tt.user, tt.pass, tt.will)
				want := tt.want
				if v != packet.V5 {
					// 3.x return codes (5: not authorized, 4: bad user name
					// or password, 2: identifier rejected) decode back to
					// their 5.0 equivalents.
					want, _ = packet.ConnackReasonCode(packet.ConnackReturnCode(tt.want))
				}
				if ack.ReasonCode != want {
					t.Fatalf("CONNACK %v, want %v", ack.ReasonCode, want)
				}
				c.ExpectClosed()
			})
		}
	}
	// The client-id rule only applies where a role substitutes it.
	mustConnect(t, addr, packet.V311, "A+", "", []byte(f.tokens["A"]))
}

func TestTenantPublishRefusals(t *testing.T) {
	tests := []struct {
		name   string
		pub    packet.Publish
		asUser bool // the gateway; else consumer A
	}{
		{"QoS above the role", packet.Publish{Topic: "A/read/m1/gas", QoS: 2, PacketID: 1}, true},
		{"retain not allowed", packet.Publish{Topic: "A/read/m1/gas", QoS: 1, Retain: true, PacketID: 1}, true},
		{"outside the role", packet.Publish{Topic: "A/config/m1", QoS: 1, PacketID: 1}, true},
		{"$SYS", packet.Publish{Topic: "$SYS/broker/x", QoS: 0}, true},
		{"consumer publishing", packet.Publish{Topic: "A/read/m1/gas", QoS: 0}, false},
		{"consumer publishing to the other tenant", packet.Publish{Topic: "B/read/m1/gas", QoS: 1, PacketID: 1}, false},
	}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		for _, mode := range []string{broker.UnauthorizedClose, broker.UnauthorizedAckAndDrop} {
			t.Run(v.String()+"/"+mode, func(t *testing.T) {
				f := newTenantFixture(t, mode)
				_, addr := mqtttest.StartBroker(t, f.options)
				watchA := mustConnect(t, addr, v, "watch-a", "", []byte(f.tokens["A"]))
				watchB := mustConnect(t, addr, v, "watch-b", "", []byte(f.tokens["B"]))
				watchA.Subscribe(1, packet.Subscription{Filter: "A/read/#", QoS: 1})
				watchB.Subscribe(1, packet.Subscription{Filter: "B/read/#", QoS: 1})
				for i, tt := range tests {
					id := fmt.Sprintf("pub-%d", i)
					var c *mqtttest.Client
					if tt.asUser {
						c = mustConnect(t, addr, v, id, "gateway", []byte("gw-password"))
					} else {
						c = mustConnect(t, addr, v, id, "", []byte(f.tokens["A"]))
					}
					p := tt.pub
					c.Send(&p)
					if mode == broker.UnauthorizedClose {
						got := c.ExpectClosed()
						if v == packet.V5 {
							if len(got) != 1 {
								t.Fatalf("%s: got %v before the close, want DISCONNECT 0x87", tt.name, got)
							}
							if d, ok := got[0].(*packet.Disconnect); !ok || d.ReasonCode != packet.NotAuthorized {
								t.Fatalf("%s: got %+v before the close, want DISCONNECT 0x87", tt.name, got[0])
							}
						} else if len(got) != 0 {
							t.Fatalf("%s: got %v before the close", tt.name, got)
						}
						continue
					}
					// ack-and-drop: the normal acknowledgement, nothing delivered, still connected.
					switch p.QoS {
					case 1:
						if _, ok := c.Expect().(*packet.Puback); !ok {
							t.Fatalf("%s: no PUBACK", tt.name)
						}
					case 2:
						if _, ok := c.Expect().(*packet.Pubrec); !ok {
							t.Fatalf("%s: no PUBREC", tt.name)
						}
						c.Send(&packet.Pubrel{PacketID: p.PacketID})
						if _, ok := c.Expect().(*packet.Pubcomp); !ok {
							t.Fatalf("%s: no PUBCOMP", tt.name)
						}
					}
					c.Send(&packet.Pingreq{})
					if _, ok := c.Expect().(*packet.Pingresp); !ok {
						t.Fatalf("%s: connection not usable after ack-and-drop", tt.name)
					}
				}
				watchA.ExpectNone(200 * time.Millisecond)
				watchB.ExpectNone(10 * time.Millisecond)
			})
		}
	}
}
