package interop_test

import (
	"testing"

	"github.com/petrel-mqtt/petrel/packet"
)

// Re-authentication (5.0 AUTH 0x19 with SCRAM-SHA-256 [MQTT-4.12.1]): it
// may renew the credentials of the same identity, never change principal
// or tenant: proving another user's password ends the connection with
// DISCONNECT 0x87 and nothing of that identity is applied. The same user
// with narrower roles (its users-file entry changed) keeps only what they
// allow.

func reauthScenarios() []scenario {
	var out []scenario
	for _, s := range []struct {
		name string
		s    sess
	}{{"clean", cleanSess}, {"persistent", freshPersist}} {
		for _, c := range []struct{ name, from, as string }{
			{"A-as-A-narrow", "A-narrow", "A"}, // widen within the tenant
			{"A-as-A-other", "A", "A-other"},   // another user of the tenant
			{"B-as-A", "B", "A"},               // into tenant A
			{"A-as-B", "A", "B"},               // out of tenant A, keeping A's session
			{"A-narrow-as-B", "A-narrow", "B"}, // another tenant's wider roles
			{"A-other-as-A", "A-other", "A"},   // same roles, other user
			{"A-deny-as-A", "A-deny", "A"},     // shed the deny filters
			{"B-as-A-narrow", "B", "A-narrow"}, // into tenant A, narrower
			{"A-narrow-as-A-deny", "A-narrow", "A-deny"},
		} {
			out = append(out, scenario{name: "reauth/" + c.name + "/" + s.name, versions: []packet.Version{packet.V5},
				attackers: []string{c.from},
				run:       func(t *testing.T, w *world, atk string) { reauthAsOther(t, w, c.from, c.as, s.s) }})
		}
		out = append(out, scenario{name: "reauth/same-user-narrowed/" + s.name, versions: []packet.Version{packet.V5},
			attackers: []string{"A"},
			run:       func(t *testing.T, w *world, atk string) { reauthNarrowed(t, w, s.s) }})
	}
	for _, c := range []struct{ name, from, as string }{
		{"A-narrow-as-A", "A-narrow", "A"}, {"B-as-A", "B", "A"}, {"A-as-B", "A", "B"},
	} {
		out = append(out, scenario{name: "reauth/password-connection/" + c.name, versions: []packet.Version{packet.V5},
			attackers: []string{c.from},
			run:       func(t *testing.T, w *world, atk string) { reauthOnPasswordConnection(t, w, c.from, c.as) }})
	}
	out = append(out, scenario{name: "reauth/same-user-moved-to-B", versions: []packet.Version{packet.V5},
		attackers: []string{"A"}, run: reauthMovedTenant})
	return out
}

// readable is a filter each principal may subscribe, and a secret topic
// of A under it when it has one.
var readable = map[string]struct{ filter, secret string }{
	"A":        {"A/read/#", "A/read/secret/1"},
	"A-other":  {"A/read/#", "A/read/secret/1"},
	"A-narrow": {"A/read/public/#", ""},
	"A-deny":   {"A/#", ""},
	"B":        {"B/read/#", ""},
}

// reauthAsOther: from connects by SCRAM and subscribes what it may, then
// re-authenticates proving as's password. The broker ends the connection
// with DISCONNECT 0x87 before anything else; what as's grants would add
// is never delivered on it; from's persistent session is from's still.
func reauthAsOther(t *testing.T, w *world, from, as string, s sess) {
	const id = "dev"
	c := w.scramConnect(from, id, s)
	c.mustSub(readable[from].filter)
	gwA, _ := w.connect("gwA", "gw", cleanSess)

	end := c.reauth(as)
	if d, ok := end.(*packet.Disconnect); !ok || d.ReasonCode != packet.NotAuthorized {
		t.Errorf("CROSSING: re-authentication of %s as %s: got %+v, want DISCONNECT 0x87", from, as, end)
		// Accepted: try what the other identity could do.
		if codes := c.sub(0, "A/#", "A/read/#"); !codes[0].IsError() || !codes[1].IsError() {
			t.Logf("after the switch, SUBACK %v", codes)
		}
		gwA.pub("A/read/secret/1", "secret:after", 1, false)
		noCrossing(t, from, c.drain(), "secret:")
		return
	}
	gwA.pub("A/read/secret/1", "secret:after", 1, false)
	gwA.pub("A/alert/m1", "secret:alarm", 1, false)
	if got := c.ExpectClosed(); len(got) > 0 {
		t.Errorf("CROSSING: after DISCONNECT 0x87 %s got %d more packets", from, len(got))
	}
	if s.expiry == 0 {
		return
	}
	// from's session is still from's: it resumes it, and A's reader is
	// unaffected.
	c2, ack := w.connect(from, id, persistSess)
	if !ack.SessionPresent {
		t.Errorf("%s's session is gone after the refused re-authentication", from)
	}
	_ = c2
	o, _ := w.connect("A-other", "other", cleanSess)
	o.mustSub("A/read/#")
	gwA.pub("A/read/secret/2", "secret:other", 1, false)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A-other", o.until("ctl:a"), "secret:other")
}

// reauthNarrowed: a-app's users-file entry is narrowed and reloaded
// (without Reauthorize), then a-app re-authenticates: what the narrower
// roles refuse is revoked on the spot [MQTT-4.12.1-1].
func reauthNarrowed(t *testing.T, w *world, s sess) {
	c := w.scramConnect("A", "dev", s)
	c.mustSub("A/read/#", "A/alert/#")
	pa := w.users["a-app"]
	pa.roles = narrowRoles
	w.users["a-app"] = pa
	w.writeUsers()
	if err := w.svc.Reload(w.cfg); err != nil {
		t.Fatal(err)
	}
	if end, ok := c.reauth("A").(*packet.Auth); !ok || end.ReasonCode != packet.Success {
		t.Fatalf("same-user re-authentication: %+v, want AUTH 0x00", end)
	}
	c.mustSub("A/read/public/#") // the control path left to the narrower roles
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/secret/1", "secret:1", 1, false)
	gwA.pub("A/alert/m1", "secret:2", 2, false)
	gwA.pub("A/read/public/ctl", "ctl:a", 1, false)
	noCrossing(t, "a-app (narrowed)", c.until("ctl:a"), "secret:")
}

// reauthOnPasswordConnection: a connection made with a password (no
// authentication method) starts a SCRAM re-authentication as another
// user: re-authentication uses the CONNECT's method [MQTT-4.12.1-1], so
// the broker ends the connection (DISCONNECT 0x82) without an exchange.
func reauthOnPasswordConnection(t *testing.T, w *world, from, as string) {
	c, _ := w.connect(from, "dev", cleanSess)
	c.mustSub(readable[from].filter)
	pr := principals[as]
	sc := &scram{user: pr.user, pass: "pw-" + pr.user, cnonce: "r-password-conn"}
	re := &packet.Auth{ReasonCode: packet.ReAuthenticate}
	scramProps(&re.Properties, sc.clientFirst())
	c.Send(re)
	got := c.ExpectClosed()
	if len(got) != 1 {
		t.Fatalf("CROSSING: %s re-authenticating as %s on a password connection: got %+v, want DISCONNECT and close", from, as, got)
	}
	if d, ok := got[0].(*packet.Disconnect); !ok || d.ReasonCode != packet.ProtocolError {
		t.Errorf("CROSSING: %s re-authenticating as %s on a password connection: got %+v, want DISCONNECT 0x82", from, as, got[0])
	}
	o, _ := w.connect("A-other", "other", cleanSess)
	o.mustSub("A/read/#")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/secret/1", "secret:other", 1, false)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A-other", o.until("ctl:a"), "secret:other")
}

// reauthMovedTenant: a-app's users-file entry moves to tenant B and is
// reloaded; a-app's connection (tenant A) re-authenticates with a-app's
// password: the identity it proves is of another tenant now, so the
// connection ends with DISCONNECT 0x87 [MQTT-4.12.1-2] and keeps nothing.
func reauthMovedTenant(t *testing.T, w *world, _ string) {
	c := w.scramConnect("A", "dev", freshPersist)
	c.mustSub("A/read/#")
	pa := w.users["a-app"]
	pa.tenant = "B"
	w.users["a-app"] = pa
	w.writeUsers()
	if err := w.svc.Reload(w.cfg); err != nil {
		t.Fatal(err)
	}
	end := c.reauth("A")
	if d, ok := end.(*packet.Disconnect); !ok || d.ReasonCode != packet.NotAuthorized {
		t.Errorf("CROSSING: re-authentication of a-app moved to tenant B: got %+v, want DISCONNECT 0x87", end)
	}
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/secret/1", "secret:1", 1, false)
	if got := c.ExpectClosed(); crossings(filterPublishes(got), "secret:") > 0 {
		t.Errorf("CROSSING: a-app got %d secret messages after the refused re-authentication", len(got))
	}
}

// filterPublishes returns the PUBLISH packets of ps.
func filterPublishes(ps []packet.Packet) []*packet.Publish {
	var out []*packet.Publish
	for _, p := range ps {
		if m, ok := p.(*packet.Publish); ok {
			out = append(out, m)
		}
	}
	return out
}
