package interop_test

import (
	"testing"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// Reload (the SIGHUP path: auth.Service.Reload, then Broker.Reauthorize):
// a principal of tenant A whose grants were narrowed, by a role's new
// definition or by its users-file entry, keeps nothing it may no longer
// receive: live and stored subscriptions, queued messages (DESIGN.md
// section 3, authorization over time). Its will is published only if its
// identity may still publish it.

func reloadScenarios() []scenario {
	principalsA := []string{"A", "A-jwt"}
	users := []string{"A"} // users-file changes apply to users-file principals
	return []scenario{
		{name: "reload/role-narrowed/live", attackers: principalsA,
			run: func(t *testing.T, w *world, atk string) { reloadNarrowed(t, w, atk, narrowRolesDef, false) }},
		{name: "reload/role-narrowed/stored", attackers: principalsA, stores: []string{"mem", "disk"}, tweak: windowOfOne,
			run: func(t *testing.T, w *world, atk string) { reloadNarrowed(t, w, atk, narrowRolesDef, true) }},
		{name: "reload/deny-added/live", attackers: principalsA,
			run: func(t *testing.T, w *world, atk string) { reloadNarrowed(t, w, atk, denyAddedDef, false) }},
		{name: "reload/deny-added/stored", attackers: principalsA, stores: []string{"mem", "disk"},
			run: func(t *testing.T, w *world, atk string) { reloadNarrowed(t, w, atk, denyAddedDef, true) }},
		{name: "reload/user-roles-narrowed/live", attackers: users,
			run: func(t *testing.T, w *world, atk string) { reloadNarrowed(t, w, atk, userNarrowed, false) }},
		{name: "reload/user-roles-narrowed/stored", attackers: users, stores: []string{"mem", "disk"},
			run: func(t *testing.T, w *world, atk string) { reloadNarrowed(t, w, atk, userNarrowed, true) }},
		{name: "reload/user-removed/live", attackers: users,
			run: func(t *testing.T, w *world, atk string) { reloadNarrowed(t, w, atk, userRemoved, false) }},
		{name: "reload/user-moved-to-B/live", attackers: users,
			run: func(t *testing.T, w *world, atk string) { reloadNarrowed(t, w, atk, userMovedToB, false) }},
		{name: "reload/user-moved-to-B/stored", attackers: users, stores: []string{"mem", "disk"},
			run: func(t *testing.T, w *world, atk string) { reloadNarrowed(t, w, atk, userMovedToB, true) }},
		{name: "reload/widened-then-narrowed", attackers: principalsA, run: reloadWidenedThenNarrowed},
		{name: "reload/will-after-publish-revoked", attackers: principalsA,
			run: func(t *testing.T, w *world, atk string) { reloadWill(t, w, atk, false) }},
		{name: "reload/delayed-will-after-publish-revoked", attackers: principalsA, versions: []packet.Version{packet.V5},
			stores: []string{"mem", "disk"},
			run:    func(t *testing.T, w *world, atk string) { reloadWill(t, w, atk, true) }},
	}
}

// A narrowing applies a change to w that leaves principal "A" (a-app)
// reading A/read/public/# at most, and returns whether the role still
// lets it read A/read/public/# (the control path).
type narrowing func(w *world) (publicStillAllowed bool)

// narrowRolesDef: the read role now covers A/read/public/# only, the
// alarm role nothing of A's.
func narrowRolesDef(w *world) bool {
	r := roleByName("BUBBLE_UP_READ_CONSUMER")
	r.Topics = []string{"{tenantId}/read/public/#"}
	w.setRole(r)
	al := roleByName("BUBBLE_UP_ALARM_CONSUMER")
	al.Topics = []string{"{tenantId}/alarm-archive/#"}
	w.setRole(al)
	return true
}

// denyAddedDef: both consumer roles deny the secret topics now.
func denyAddedDef(w *world) bool {
	r := roleByName("BUBBLE_UP_READ_CONSUMER")
	r.Deny = []string{"{tenantId}/read/secret/#"}
	w.setRole(r)
	al := roleByName("BUBBLE_UP_ALARM_CONSUMER")
	al.Deny = []string{"{tenantId}/alert/#"}
	w.setRole(al)
	return true
}

// userNarrowed: a-app's users-file entry now has the narrow roles.
func userNarrowed(w *world) bool {
	p := w.users["a-app"]
	p.roles = narrowRoles
	w.users["a-app"] = p
	return true
}

// userRemoved: a-app is no longer in the users file.
func userRemoved(w *world) bool {
	delete(w.users, "a-app")
	return false
}

// userMovedToB: a-app's users-file entry now belongs to tenant B.
func userMovedToB(w *world) bool {
	p := w.users["a-app"]
	p.tenant = "B"
	w.users["a-app"] = p
	return false
}

// reloadNarrowed: the principal subscribes A/read/# and A/alert/#, live
// or (stored) offline with messages queued and one unacknowledged; the
// change is applied and reloaded; nothing secret is delivered after.
func reloadNarrowed(t *testing.T, w *world, atk string, change narrowing, stored bool) {
	const id = "reader"
	p, _ := w.connect(atk, id, freshPersist)
	p.mustSub("A/read/#", "A/alert/#")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	if stored {
		gwA.pub("A/read/secret/0", "secret:0", 1, false)
		if m := p.ExpectPublish(); string(m.Payload) != "secret:0" {
			t.Fatalf("got %q first", m.Payload) // left unacknowledged: owed again on resume
		}
		p.bye("A")
		gwA.pub("A/read/secret/1", "secret:1", 1, false)
		gwA.pub("A/alert/m1", "secret:2", 2, false)
		gwA.pub("A/read/public/1", "pub:1", 1, false)
		w.waitQueued("A", id, 4)
	}
	public := change(w)
	w.reload()
	if stored {
		if w.store == "disk" {
			w.restart()
			gwA, _ = w.connect("gwA", "gw", cleanSess)
		}
		var ack *packet.Connack
		p, ack = w.try(atk, id, persistSess, connectOpts{})
		if ack.ReasonCode != packet.Success {
			if public {
				t.Fatalf("%s refused after the reload: %v", atk, ack.ReasonCode)
			}
			// Refused: it reads nothing; A's own reader still does.
			reloadControl(t, w, gwA)
			return
		}
	}
	gwA.pub("A/read/secret/2", "secret:3", 1, false)
	gwA.pub("A/alert/m1", "secret:4", 2, false)
	gwA.pub("A/read/secret/q0", "secret:5", 0, false)
	if public {
		// A/read/# itself may be revoked: the control path is the one
		// left to it.
		p.mustSub("A/read/public/#")
		gwA.pub("A/read/public/ctl", "ctl:a", 1, false)
		got := p.until("ctl:a")
		noCrossing(t, atk, got, "secret:")
		if stored {
			hasPayloads(t, atk, got, "pub:1")
		}
	} else {
		noCrossing(t, atk, p.drain(), "secret:")
	}
	reloadControl(t, w, gwA)
}

// reloadControl: a principal of A the change did not touch still reads
// A's topics.
func reloadControl(t *testing.T, w *world, gwA *peer) {
	t.Helper()
	o, _ := w.connect("A-other", "other", cleanSess)
	if w.cfg.Roles[0].Topics[0] != "{tenantId}/read/#" || len(w.cfg.Roles[0].Deny) > 0 {
		// The read role itself was narrowed: the control is the public path.
		o.mustSub("A/read/public/#")
		gwA.pub("A/read/public/x", "ctl:other", 1, false)
		o.until("ctl:other")
		return
	}
	o.mustSub("A/read/#")
	gwA.pub("A/read/secret/x", "secret:other", 1, false)
	gwA.pub("A/read/ctl", "ctl:other", 1, false)
	hasPayloads(t, "A-other", o.until("ctl:other"), "secret:other")
}

// reloadWidenedThenNarrowed: the read role is widened to A/secret/#, the
// principal subscribes there, the role is narrowed back: the grant goes.
func reloadWidenedThenNarrowed(t *testing.T, w *world, atk string) {
	wide := roleByName("BUBBLE_UP_READ_CONSUMER")
	wide.Topics = append(wide.Topics, "{tenantId}/secret/#")
	w.setRole(wide)
	w.reload()
	p, _ := w.connect(atk, "reader", freshPersist)
	p.mustSub("A/secret/#", "A/read/ctl")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/secret/1", "allowed:1", 1, false)
	gwA.pub("A/read/ctl", "ctl:1", 1, false)
	hasPayloads(t, atk, p.until("ctl:1"), "allowed:1")

	w.setRole(roleByName("BUBBLE_UP_READ_CONSUMER"))
	if n := w.reload(); n < 1 {
		t.Errorf("Reauthorize revoked %d subscriptions, want A/secret/# revoked", n)
	}
	gwA.pub("A/secret/2", "secret:2", 1, false)
	gwA.pub("A/read/ctl", "ctl:2", 1, false)
	noCrossing(t, atk, p.until("ctl:2"), "secret:")
	if codes := p.sub(0, "A/secret/#"); codes[0] != w.refused() {
		t.Errorf("CROSSING: %s subscribed A/secret/# again after the narrowing: %v", atk, codes[0])
	}
}

// reloadWill: the principal connects with a will on A/alert/m1 while its
// gateway role allows it (delayed: a 5.0 will delayed 1 s in a session
// expiring after 1 s [MQTT-3.1.3-9]); the role is narrowed to A/read/#
// and reloaded; its connection ends abnormally: the will, which its
// identity may no longer publish, is not published [MQTT-3.1.2-8].
func reloadWill(t *testing.T, w *world, atk string, delayed bool) {
	watch, _ := w.connect("A-other", "watch", cleanSess)
	watch.mustSub("A/alert/#", "A/read/ctl")
	will := &packet.Will{Topic: "A/alert/m1", Payload: []byte("evil:will"), QoS: 1}
	s := cleanSess
	if delayed {
		will.Properties.WillDelayInterval = 1
		will.Properties.Set(packet.PropWillDelayInterval)
		s = sess{clean: true, expiry: 1}
	}
	p, _ := w.connectWith(atk, "dev", s, connectOpts{will: will})
	if delayed {
		_ = p.Conn.Close() // the delay runs; the policy changes meanwhile
	}
	gw := roleByName("GATEWAY_PUBLISHER")
	gw.Topics = []string{"{tenantId}/read/#"}
	w.setRole(gw)
	w.reload()
	if !delayed {
		_ = p.Conn.Close() // an abnormal end: the will is due now
	}
	// Due, and sent or not, once the session is gone.
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool {
		_, ok := w.b.ClientStatsIn("A", "dev")
		return !ok
	}, "the session of dev ended")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	noCrossing(t, "A's watcher", watch.until("ctl:a"), "evil:")
}
