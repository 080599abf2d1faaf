package interop_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// Authorization over time (DESIGN.md section 3): what is delivered is
// allowed for the identity that receives it under the policy in force. A
// real auth.Service with roles; users of tenant A log in with passwords.

// quiet is how long a test listens for a message that must not come.
const quiet = 300 * time.Millisecond

// pubAll publishes anything, for the test's gateway.
var pubAll = auth.Role{Name: "PUB_ALL", Activity: auth.ActivityPublish, MaxQoS: 2, Retain: true, Topics: []string{"#", "$TopicA/#"}}

// authzFixture is an auth.Service whose roles a test can replace.
type authzFixture struct {
	t     *testing.T
	svc   *auth.Service
	cfg   auth.Config
	users string
}

// newAuthzFixture writes a users file (username -> roles, tenant A,
// password "pw-"+username) and builds the Service with roles.
func newAuthzFixture(t *testing.T, users map[string][]string, roles ...auth.Role) *authzFixture {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("users:\n")
	for _, name := range slices.Sorted(maps.Keys(users)) {
		hash, err := auth.HashBcrypt([]byte("pw-"+name), 4)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, "  - {username: %s, password: '%s', tenant: A, roles: [%s]}\n", name, hash, strings.Join(users[name], ", "))
	}
	f := &authzFixture{t: t, users: filepath.Join(t.TempDir(), "users.yaml")}
	if err := os.WriteFile(f.users, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	f.cfg = auth.Config{UsersFile: f.users, Roles: roles}
	svc, err := auth.New(f.cfg, auth.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

// setRoles reloads the Service with roles, as SIGHUP does.
func (f *authzFixture) setRoles(roles ...auth.Role) {
	f.t.Helper()
	f.cfg.Roles = roles
	if err := f.svc.Reload(f.cfg); err != nil {
		f.t.Fatal(err)
	}
}

func (f *authzFixture) options(o broker.Options) broker.Options {
	o.Authenticator, o.Authorizer = f.svc, f.svc
	return o
}

// login connects user as client id at version v; persistent asks for a
// session that outlives the connection.
func login(t *testing.T, addr string, v packet.Version, id, user string, persistent bool) (*mqtttest.Client, *packet.Connack) {
	t.Helper()
	c := mqtttest.Dial(t, addr, v)
	p := &packet.Connect{ClientID: id, CleanStart: !persistent, KeepAlive: 60,
		Username: user, UsernameFlag: true, Password: []byte("pw-" + user), PasswordFlag: true}
	if persistent && v == packet.V5 {
		p.Properties.SessionExpiryInterval = 3600
		p.Properties.Set(packet.PropSessionExpiryInterval)
	}
	ack := c.Connect(p)
	if ack.ReasonCode != packet.Success {
		t.Fatalf("%s as %s: CONNACK %v", id, user, ack.ReasonCode)
	}
	return c, ack
}

// publishAll publishes each topic at qos and waits for its acknowledgement.
func publishAll(t *testing.T, c *mqtttest.Client, qos byte, retain bool, topics ...string) {
	t.Helper()
	for i, topic := range topics {
		p := &packet.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte("m:" + topic)}
		if qos > 0 {
			p.PacketID = uint16(i + 1)
		}
		c.Send(p)
		switch qos {
		case 1:
			if a, ok := c.Expect().(*packet.Puback); !ok || a.ReasonCode.IsError() {
				t.Fatalf("publish %s: %+v, want PUBACK", topic, a)
			}
		case 2:
			if _, ok := c.Expect().(*packet.Pubrec); !ok {
				t.Fatalf("publish %s: no PUBREC", topic)
			}
			c.Send(&packet.Pubrel{PacketID: p.PacketID})
			if _, ok := c.Expect().(*packet.Pubcomp); !ok {
				t.Fatalf("publish %s: no PUBCOMP", topic)
			}
		}
	}
	if qos == 0 { // a round trip: the broker has routed them
		c.Send(&packet.Pingreq{})
		if _, ok := c.Expect().(*packet.Pingresp); !ok {
			t.Fatalf("no PINGRESP after the publishes")
		}
	}
}

// receive reads PUBLISH packets, acknowledging them, until none comes
// within quiet; it returns their topics in order and fails on anything
// else.
func receive(t *testing.T, c *mqtttest.Client) []*packet.Publish {
	t.Helper()
	var got []*packet.Publish
	for {
		p, err := c.Read(quiet)
		if err != nil {
			return got
		}
		pub, ok := p.(*packet.Publish)
		if !ok {
			t.Fatalf("got %T, want PUBLISH", p)
		}
		got = append(got, pub)
		switch pub.QoS {
		case 1:
			c.Send(&packet.Puback{PacketID: pub.PacketID})
		case 2:
			c.Send(&packet.Pubrec{PacketID: pub.PacketID})
			if _, ok := c.Expect().(*packet.Pubrel); !ok {
				t.Fatalf("no PUBREL for %s", pub.Topic)
			}
			c.Send(&packet.Pubcomp{PacketID: pub.PacketID})
		}
	}
}

func pubTopics(ps []*packet.Publish) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Topic
	}
	return out
}

// expectTopics fails unless c receives exactly want, in order.
func expectTopics(t *testing.T, c *mqtttest.Client, who string, want ...string) []*packet.Publish {
	t.Helper()
	got := receive(t, c)
	if !slices.Equal(pubTopics(got), want) {
		t.Fatalf("%s received %q, want %q", who, pubTopics(got), want)
	}
	return got
}

func goOffline(t *testing.T, b *broker.Broker, c *mqtttest.Client, id string) {
	t.Helper()
	c.Send(&packet.Disconnect{})
	waitOfflineIn(t, b, "A", id)
}

// waitOfflineIn waits until clientID's session in tenant is offline.
func waitOfflineIn(t *testing.T, b *broker.Broker, tenant, clientID string) {
	t.Helper()
	eventually(t, func() bool {
		st, ok := b.ClientStatsIn(tenant, clientID)
		return ok && !st.Online
	}, clientID+" offline")
}

func waitQueued(t *testing.T, b *broker.Broker, id string, n int) {
	t.Helper()
	eventually(t, func() bool {
		st, ok := b.ClientStatsIn("A", id)
		return ok && st.Queued == n
	}, fmt.Sprintf("%d messages queued for %s", n, id))
}

// TestReloadRevokesSubscriptions narrows a role and reloads: the live
// subscription and the stored one (offline, persistent) stop receiving
// what is no longer allowed, a granted QoS above the new maximum is
// lowered, queued messages not yet sent that are no longer allowed are
// not delivered, the store forgets the revoked subscription, and every
// revocation is counted.
func TestReloadRevokesSubscriptions(t *testing.T) {
	wide := auth.Role{Name: "READER", Activity: auth.ActivitySubscribe, MaxQoS: 2,
		Topics: []string{"{tenantId}/read/#", "{tenantId}/secret/#"}}
	narrow := auth.Role{Name: "READER", Activity: auth.ActivitySubscribe, MaxQoS: 1,
		Topics: []string{"{tenantId}/read/#"}, Deny: []string{"{tenantId}/read/private/#"}}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			f := newAuthzFixture(t, map[string][]string{"reader": {"READER"}, "gw": {"PUB_ALL"}}, wide, pubAll)
			st := memstore.New()
			// A window of one: the live client's first message stays
			// unacknowledged and the next ones wait in its queue.
			b, addr := mqtttest.StartBroker(t, f.options(broker.Options{Store: st, MaxInflight: 1}))
			subs := []packet.Subscription{{Filter: "A/read/#", QoS: 2}, {Filter: "A/secret/#", QoS: 1}}

			live, _ := login(t, addr, v, "live", "reader", false)
			if codes := live.Subscribe(1, subs...); !slices.Equal(codes, []packet.ReasonCode{2, 1}) {
				t.Fatalf("live SUBACK %v", codes)
			}
			stored, _ := login(t, addr, v, "stored", "reader", true)
			if codes := stored.Subscribe(1, subs...); !slices.Equal(codes, []packet.ReasonCode{2, 1}) {
				t.Fatalf("stored SUBACK %v", codes)
			}
			goOffline(t, b, stored, "stored")

			gw, _ := login(t, addr, v, "gw", "gw", false)
			publishAll(t, gw, 1, false, "A/read/first")
			first := live.ExpectPublish() // left unacknowledged
			if first.Topic != "A/read/first" {
				t.Fatalf("live got %q first", first.Topic)
			}
			publishAll(t, gw, 1, false, "A/secret/1", "A/read/private/1", "A/read/ok")
			waitQueued(t, b, "live", 3)
			waitQueued(t, b, "stored", 4)

			f.setRoles(narrow, pubAll)
			// Per session: A/secret/# revoked, A/read/# lowered to QoS 1
			// with A/read/private/# denied.
			if n := b.Reauthorize(); n != 4 {
				t.Fatalf("Reauthorize revoked or narrowed %d subscriptions, want 4", n)
			}
			if s := b.Stats(); s.Revocations != 4 || s.RevokedMessages != 4 {
				t.Fatalf("Stats: %d revocations, %d revoked messages; want 4 and 4 (two queued per session)", s.Revocations, s.RevokedMessages)
			}

			live.Send(&packet.Puback{PacketID: first.PacketID})
			expectTopics(t, live, "live, queued", "A/read/ok")
			publishAll(t, gw, 1, false, "A/secret/2", "A/read/private/2")
			publishAll(t, gw, 2, false, "A/read/ok2")
			if got := expectTopics(t, live, "live, after the reload", "A/read/ok2"); got[0].QoS != 1 {
				t.Fatalf("live got QoS %d, want 1 (the lowered grant)", got[0].QoS)
			}

			stored2, ack := login(t, addr, v, "stored", "reader", true)
			if !ack.SessionPresent {
				t.Fatal("stored session not present")
			}
			expectTopics(t, stored2, "stored", "A/read/first", "A/read/ok", "A/read/ok2")
			if cs, _ := b.ClientStatsIn("A", "stored"); cs.Subscriptions != 1 {
				t.Fatalf("stored session holds %d subscriptions, want 1", cs.Subscriptions)
			}
			state, err := broker.LoadAll(context.Background(), st)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, ss := range state.Sessions {
				if ss.ClientID != broker.SessionKey("A", "stored") {
					continue
				}
				found = true
				if len(ss.Subscriptions) != 1 || ss.Subscriptions[0].Filter != "A/read/#" || ss.Subscriptions[0].QoS != 1 {
					t.Fatalf("store holds %+v, want only A/read/# at QoS 1", ss.Subscriptions)
				}
			}
			if !found {
				t.Fatal("the stored session is not in the store")
			}
		})
	}
}

// TestResumeByAnotherPrincipal: a session resumed by another user of the
// same tenant with narrower roles keeps nothing those roles refuse: not
// the subscription, not the messages queued under it, not the one left
// unacknowledged by the previous connection.
func TestResumeByAnotherPrincipal(t *testing.T) {
	all := auth.Role{Name: "ALL_READ", Activity: auth.ActivitySubscribe, MaxQoS: 1, Topics: []string{"{tenantId}/#"}}
	public := auth.Role{Name: "PUBLIC_READ", Activity: auth.ActivitySubscribe, MaxQoS: 1, Topics: []string{"{tenantId}/public/#"}}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			f := newAuthzFixture(t, map[string][]string{"alice": {"ALL_READ"}, "bob": {"PUBLIC_READ"}, "gw": {"PUB_ALL"}}, all, public, pubAll)
			b, addr := mqtttest.StartBroker(t, f.options(broker.Options{}))
			const id = "device-7"
			alice, _ := login(t, addr, v, id, "alice", true)
			if codes := alice.Subscribe(1, packet.Subscription{Filter: "A/#", QoS: 1}, packet.Subscription{Filter: "A/public/#", QoS: 1}); !slices.Equal(codes, []packet.ReasonCode{1, 1}) {
				t.Fatalf("alice SUBACK %v", codes)
			}
			gw, _ := login(t, addr, v, "gw", "gw", false)
			publishAll(t, gw, 1, false, "A/private/0")
			if p := alice.ExpectPublish(); p.Topic != "A/private/0" {
				t.Fatalf("alice got %q", p.Topic) // not acknowledged: owed again on resume
			}
			goOffline(t, b, alice, id)
			publishAll(t, gw, 1, false, "A/private/1", "A/public/1")

			bob, ack := login(t, addr, v, id, "bob", true)
			if !ack.SessionPresent {
				t.Fatal("session not present")
			}
			expectTopics(t, bob, "bob, queued", "A/public/1")
			publishAll(t, gw, 1, false, "A/private/2", "A/public/2")
			expectTopics(t, bob, "bob, live", "A/public/2")
			if s := b.Stats(); s.Revocations != 1 || s.RevokedMessages != 2 {
				t.Fatalf("Stats: %d revocations, %d revoked messages; want 1 (A/#) and 2", s.Revocations, s.RevokedMessages)
			}
			if cs, _ := b.ClientStatsIn("A", id); cs.Subscriptions != 1 {
				t.Fatalf("session holds %d subscriptions, want 1", cs.Subscriptions)
			}
			// Alice again: her roles allow A/#, but the session no longer
			// has it; nothing comes back by itself.
			goOffline(t, b, bob, id)
			alice2, _ := login(t, addr, v, id, "alice", true)
			publishAll(t, gw, 1, false, "A/private/3", "A/public/3")
			expectTopics(t, alice2, "alice, resumed", "A/public/3")
		})
	}
}

// TestResumeAfterRestart: a session restored from the store has no known
// holder; the client that resumes it gets only what its roles allow, also
// of what was queued before it came.
func TestResumeAfterRestart(t *testing.T) {
	public := auth.Role{Name: "PUBLIC_READ", Activity: auth.ActivitySubscribe, MaxQoS: 1, Topics: []string{"{tenantId}/public/#"}}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			const id = "device-9"
			// What a broker with a wider policy left in the store.
			st := memstore.New()
			key := broker.SessionKey("A", id)
			var batch broker.Batch
			batch.Add(broker.Op{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{
				ClientID: key, Version: v, ExpiryInterval: broker.NoExpiry}})
			batch.Add(broker.Op{Kind: broker.OpPutSubscription, ClientID: key, Sub: &broker.StoredSubscription{Filter: "A/#", QoS: 1}})
			if err := st.Commit(&batch, true); err != nil {
				t.Fatal(err)
			}
			f := newAuthzFixture(t, map[string][]string{"alice": {"PUBLIC_READ"}, "gw": {"PUB_ALL"}}, public, pubAll)
			b, addr := mqtttest.StartBroker(t, f.options(broker.Options{Store: st}))
			gw, _ := login(t, addr, v, "gw", "gw", false)
			publishAll(t, gw, 1, false, "A/private/1", "A/public/1")
			waitQueued(t, b, id, 2)

			alice, ack := login(t, addr, v, id, "alice", true)
			if !ack.SessionPresent {
				t.Fatal("restored session not present")
			}
			expectTopics(t, alice, "alice, queued", "A/public/1")
			publishAll(t, gw, 1, false, "A/private/2", "A/public/2")
			expectNoPublish(t, alice)
			if s := b.Stats(); s.Revocations != 1 || s.RevokedMessages != 1 {
				t.Fatalf("Stats: %d revocations, %d revoked messages; want 1 and 1", s.Revocations, s.RevokedMessages)
			}
			// The revoked subscription and message leave the store (the
			// acknowledged message too, lazily).
			eventually(t, func() bool {
				state, err := broker.LoadAll(context.Background(), st)
				if err != nil {
					t.Fatal(err)
				}
				for _, ss := range state.Sessions {
					if ss.ClientID == key {
						return len(ss.Subscriptions) == 0 && len(ss.Queue) == 0
					}
				}
				return false
			}, "the store holds neither the subscription nor the queued messages")
		})
	}
}

func expectNoPublish(t *testing.T, c *mqtttest.Client) {
	t.Helper()
	if got := receive(t, c); len(got) != 0 {
		t.Fatalf("received %q, want nothing", pubTopics(got))
	}
}

// TestDenyFilterUnderWildcard is the Paho interoperability suite's ACL:
// everything but test/nosubscribe. "+/+" and "#" are granted and filter
// that topic at delivery (as Mosquitto does), live, retained and through
// a shared subscription; test/nosubscribe itself is refused (0x80 / 0x87
// [MQTT-3.9.3-2]).
func TestDenyFilterUnderWildcard(t *testing.T) {
	allBut := auth.Role{Name: "ALL_BUT", Activity: auth.ActivitySubscribe, MaxQoS: 2,
		Topics: []string{"#"}, Deny: []string{"test/nosubscribe"}}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			f := newAuthzFixture(t, map[string][]string{"sub": {"ALL_BUT"}, "gw": {"PUB_ALL"}}, allBut, pubAll)
			_, addr := mqtttest.StartBroker(t, f.options(broker.Options{}))
			gw, _ := login(t, addr, v, "gw", "gw", false)
			publishAll(t, gw, 1, true, "test/nosubscribe", "TopicA/B")

			c, _ := login(t, addr, v, "sub", "sub", false)
			if codes := c.Subscribe(1, packet.Subscription{Filter: "+/+", QoS: 2}); !slices.Equal(codes, []packet.ReasonCode{2}) {
				t.Fatalf("SUBACK for +/+: %v, want granted QoS 2", codes)
			}
			// The retained message on the denied topic is not sent.
			expectTopics(t, c, "+/+ retained", "TopicA/B")
			codes := c.Subscribe(2, packet.Subscription{Filter: "#", QoS: 2}, packet.Subscription{Filter: "test/nosubscribe", QoS: 2})
			if !slices.Equal(codes, []packet.ReasonCode{2, refusedSub(v)}) {
				t.Fatalf("SUBACK for #, test/nosubscribe: %v, want [2 %v]", codes, refusedSub(v))
			}
			expectTopics(t, c, "# retained", "TopicA/B")
			publishAll(t, gw, 1, false, "test/nosubscribe", "test/other", "TopicA/B")
			expectTopics(t, c, "live", "test/other", "TopicA/B")

			if v != packet.V5 {
				return
			}
			s1, _ := login(t, addr, v, "share-1", "sub", false)
			if codes := s1.Subscribe(1, packet.Subscription{Filter: "$share/g/+/+", QoS: 1}); !slices.Equal(codes, []packet.ReasonCode{1}) {
				t.Fatalf("SUBACK for $share/g/+/+: %v", codes)
			}
			publishAll(t, gw, 1, false, "test/nosubscribe", "test/other")
			expectTopics(t, s1, "share member", "test/other")
		})
	}
}
