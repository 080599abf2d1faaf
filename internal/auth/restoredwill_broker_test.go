package auth

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/diskstore"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestRestoredWillIsAuthorizedForItsHolder: 5.0 devices leave delayed
// wills (delay 1 s, session expiry 60 s) in the disk store; the broker
// restarts with a narrower policy: the DEV role no longer publishes to
// A/alarm/#, and user "removed" left the users file. After the delay
// only the will its holder may still publish arrives (A/status/keep);
// the wills of a narrowed password user, of a token whose roles no
// longer allow the topic and of a removed user are not published, and
// are counted.
func TestRestoredWillIsAuthorizedForItsHolder(t *testing.T) {
	hash, err := HashBcrypt([]byte("pw"), 4)
	if err != nil {
		t.Fatal(err)
	}
	users := func(withRemoved bool) string {
		s := "users:\n"
		for _, u := range []string{"keep", "narrowed", "watcher"} {
			s += fmt.Sprintf("  - {username: %s, password: '%s', tenant: A, roles: [DEV, WATCH]}\n", u, hash)
		}
		if withRemoved {
			s += fmt.Sprintf("  - {username: removed, password: '%s', tenant: A, roles: [DEV]}\n", hash)
		}
		return s
	}
	uf := writeFile(t, "users.yaml", []byte(users(true)))
	roles := func(devTopics ...string) []Role {
		return []Role{
			{Name: "DEV", Activity: ActivityPublish, MaxQoS: 1, Retain: true, Topics: devTopics},
			{Name: "WATCH", Activity: ActivitySubscribe, MaxQoS: 1, Topics: []string{"{tenantId}/#"}},
		}
	}
	cfg := Config{UsersFile: uf, JWT: JWTConfig{Secret: testSecret}, Roles: roles("{tenantId}/status/#", "{tenantId}/alarm/#")}
	dir := t.TempDir()
	start := func(c Config) (*broker.Broker, string, *diskstore.Store) {
		t.Helper()
		st, err := diskstore.Open(dir, diskstore.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		s := newService(t, c)
		b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: s, Authorizer: s, Store: st})
		return b, addr, st
	}
	b, addr, st := start(cfg)
	leave := func(id, user string, pw []byte, topic string) {
		t.Helper()
		c := mqtttest.Dial(t, addr, packet.V5)
		// Retained, so that the watcher gets a will whether it fired
		// before its SUBSCRIBE (a loaded machine can take longer than the
		// delay to restart) or after.
		con := &packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 60, Password: pw, PasswordFlag: true,
			Username: user, UsernameFlag: true, Will: &packet.Will{Topic: topic, Payload: []byte("will of " + id), QoS: 1, Retain: true}}
		con.Properties.SessionExpiryInterval = 60
		con.Properties.Set(packet.PropSessionExpiryInterval)
		con.Will.Properties.WillDelayInterval = 1
		con.Will.Properties.Set(packet.PropWillDelayInterval)
		if ack := c.Connect(con); ack.ReasonCode != packet.Success {
			t.Fatalf("%s CONNACK %v", id, ack.ReasonCode)
		}
		_ = c.Conn.Close() // abnormal: the will waits out its delay
		mqtttest.Eventually(t, mqtttest.Timeout, func() bool {
			cs, ok := b.ClientStatsIn("A", id)
			return ok && !cs.Online
		}, id+" offline")
	}
	token := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("A", "DEV"), "")
	leave("keep", "keep", []byte("pw"), "A/status/keep")
	leave("narrowed", "narrowed", []byte("pw"), "A/alarm/narrowed")
	leave("token", "t", []byte(token), "A/alarm/token")
	leave("removed", "removed", []byte("pw"), "A/status/removed")

	// The restart: a graceful shutdown keeps the delayed wills stored.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(uf, []byte(users(false)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Roles = roles("{tenantId}/status/#")
	b, addr, _ = start(cfg)

	w := mqtttest.Dial(t, addr, packet.V5)
	if ack := w.Connect(&packet.Connect{ClientID: "watcher", CleanStart: true, KeepAlive: 60, Username: "watcher",
		UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true}); ack.ReasonCode != packet.Success {
		t.Fatalf("watcher CONNACK %v", ack.ReasonCode)
	}
	w.Subscribe(1, packet.Subscription{Filter: "A/#", QoS: 1})
	p := w.ExpectPublish()
	if p.Topic != "A/status/keep" {
		t.Fatalf("CROSSING: got the will on %q, want only A/status/keep", p.Topic)
	}
	w.Send(&packet.Puback{PacketID: p.PacketID})
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return b.Stats().WillsRefused == 3 }, "three wills refused")
	// Nothing else: the kept will may come a second time (live and
	// retained, when it fired while the SUBSCRIBE was handled), no other.
	for {
		p, err := w.Read(300 * time.Millisecond)
		if err != nil {
			break
		}
		pub, ok := p.(*packet.Publish)
		if !ok || pub.Topic != "A/status/keep" {
			t.Fatalf("CROSSING: got %v after the kept will", p)
		}
		w.Send(&packet.Puback{PacketID: pub.PacketID})
	}
}

// TestRestoredWillWithoutHolder: a will (retained) in a session record
// written before holders were stored (no Holder) is not published by a
// broker with an Authorizer, and is counted; with AllowAll it is
// published.
func TestRestoredWillWithoutHolder(t *testing.T) {
	hash, err := HashBcrypt([]byte("pw"), 4)
	if err != nil {
		t.Fatal(err)
	}
	uf := writeFile(t, "users.yaml", []byte(fmt.Sprintf("users:\n  - {username: w, password: '%s', tenant: A, roles: [ALL]}\n", hash)))
	s := newService(t, Config{UsersFile: uf, Roles: []Role{{Name: "ALL", Activity: ActivityBoth, MaxQoS: 1, Topics: []string{"#"}}}})
	for _, tc := range []struct {
		name    string
		o       broker.Options
		key     string
		connect packet.Connect
		wantMsg bool
	}{
		{"authorizer", broker.Options{Authenticator: s, Authorizer: s}, broker.SessionKey("A", "old"),
			packet.Connect{ClientID: "w", CleanStart: true, Username: "w", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true}, false},
		{"allow all", broker.Options{}, "old", packet.Connect{ClientID: "w", CleanStart: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := memstore.New()
			var batch broker.Batch
			batch.Add(broker.Op{Kind: broker.OpPutSession, ClientID: tc.key, Session: &broker.StoredSession{
				Version: packet.V311, ExpiryInterval: broker.NoExpiry,
				Will: &broker.StoredMessage{Topic: "A/status/old", Payload: []byte("gone"), QoS: 1, Retain: true, Origin: tc.key}}})
			if err := st.Commit(&batch, true); err != nil {
				t.Fatal(err)
			}
			o := tc.o
			o.Store = st.Reopen()
			b, addr := mqtttest.StartBroker(t, o)
			// The will was due at start-up: published, retained, before
			// Serve, or not at all.
			w := mqtttest.Dial(t, addr, packet.V311)
			tc.connect.KeepAlive = 60
			if ack := w.Connect(&tc.connect); ack.ReasonCode != packet.Success {
				t.Fatalf("CONNACK %v", ack.ReasonCode)
			}
			w.Subscribe(1, packet.Subscription{Filter: "A/#", QoS: 1})
			if !tc.wantMsg {
				w.ExpectNone(300 * time.Millisecond)
				if got := b.Stats().WillsRefused; got != 1 {
					t.Fatalf("WillsRefused %d, want 1", got)
				}
				return
			}
			if p := w.ExpectPublish(); p.Topic != "A/status/old" {
				t.Fatalf("got %q", p.Topic)
			}
		})
	}
}
