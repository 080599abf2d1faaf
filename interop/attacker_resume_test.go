package interop_test

import (
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
)

// Resumption: another principal of tenant A, with narrower roles (only
// A/read/public/#), resumes the persistent session of A's full reader
// [MQTT-3.1.2-4]: takeover within a tenant is allowed, but what the
// session delivers is decided again for the identity that resumes it
// (DESIGN.md section 3, authorization over time): not the subscriptions
// the narrower roles refuse (a $share one included), not the messages
// queued under them, not the one left unacknowledged. With the disk
// store, the session is also restored after a restart first, when its
// holder is not known.

func windowOfOne(o *broker.Options) { o.MaxInflight = 1 }

func resumeScenarios() []scenario {
	narrow := []string{"A-narrow", "A-narrow-jwt"}
	return []scenario{
		{name: "resume/narrower-principal", attackers: narrow, stores: []string{"mem", "disk"}, tweak: windowOfOne,
			run: func(t *testing.T, w *world, atk string) { resumeNarrower(t, w, atk, false) }},
		{name: "resume/narrower-principal-after-restart", attackers: narrow, stores: []string{"disk"}, tweak: windowOfOne,
			run: func(t *testing.T, w *world, atk string) { resumeNarrower(t, w, atk, true) }},
		{name: "resume/narrower-principal-takes-over-online", attackers: narrow, tweak: windowOfOne,
			run: resumeTakeoverOnline},
		{name: "resume/other-tenant-after-restart", stores: []string{"disk"},
			run: resumeOtherTenantAfterRestart},
	}
}

// resumeNarrower: A's full reader leaves a session with subscriptions
// A/read/# and $share/g/A/alert/#, one message unacknowledged and
// messages queued at QoS 1 and 2; the narrower principal resumes it.
func resumeNarrower(t *testing.T, w *world, atk string, restart bool) {
	const id = "device-7"
	a, _ := w.connect("A", id, freshPersist)
	a.mustSub("A/read/#", "$share/g/A/alert/#")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/secret/0", "secret:0", 1, false)
	if m := a.ExpectPublish(); string(m.Payload) != "secret:0" {
		t.Fatalf("A got %q first", m.Payload) // left unacknowledged: owed again on resume
	}
	a.bye("A")
	gwA.pub("A/read/secret/1", "secret:1", 1, false)
	gwA.pub("A/alert/m1", "secret:2", 2, false)
	gwA.pub("A/read/public/1", "pub:1", 1, false)
	w.waitQueued("A", id, 4)
	if restart {
		w.restart()
		gwA, _ = w.connect("gwA", "gw", cleanSess)
	}

	n, ack := w.connect(atk, id, persistSess)
	if !ack.SessionPresent {
		t.Fatalf("%s did not resume the session of its tenant", atk)
	}
	n.mustSub("A/read/public/#") // the control path (A/read/# is not the narrower principal's)
	gwA.pub("A/read/secret/2", "secret:3", 1, false)
	gwA.pub("A/alert/m1", "secret:4", 1, false)
	gwA.pub("A/read/public/ctl", "ctl:a", 1, false)
	got := n.until("ctl:a")
	noCrossing(t, atk, got, "secret:")
	hasPayloads(t, atk, got, "pub:1")
	// What the narrower roles refuse is gone from the session for good.
	n.bye("A")
	gwA.pub("A/read/secret/3", "secret:5", 1, false)
	a, _ = w.connect("A", id, persistSess)
	gwA.pub("A/read/public/ctl", "ctl:a2", 1, false) // A/read/public/# is the session's now
	noCrossing(t, "A after the narrower principal", a.until("ctl:a2"), "secret:")
}

// resumeOtherTenantAfterRestart: with the disk store, A's session is
// restored after a restart with no known holder; the attacker connects
// with its client id and clean 0, gets its own session, and A resumes
// A's with its queued message.
func resumeOtherTenantAfterRestart(t *testing.T, w *world, atk string) {
	const id = "device-8"
	a, _ := w.connect("A", id, freshPersist)
	a.mustSub("A/read/#")
	a.bye("A")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/secret/1", "secret:1", 2, false)
	w.waitQueued("A", id, 1)
	w.restart()

	b, ack := w.connect(atk, id, persistSess)
	if ack.SessionPresent {
		t.Errorf("CROSSING: %s resumed tenant A's restored session", atk)
	}
	b.mustSub("B/read/#")
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	noCrossing(t, atk, b.until("ctl:b"), "secret:")

	a, ack = w.connect("A", id, persistSess)
	if !ack.SessionPresent {
		t.Fatalf("CROSSING: tenant A's restored session is gone after %s used its client id", atk)
	}
	gwA, _ = w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A", a.until("ctl:a"), "secret:1")
}

// resumeTakeoverOnline: A's full reader is online with one message
// unacknowledged and more queued behind it (a window of one); the
// narrower principal of A takes the session over [MQTT-3.1.4-2] with
// clean 0: the old connection is closed, and nothing the narrower roles
// refuse is sent on the new one.
func resumeTakeoverOnline(t *testing.T, w *world, atk string) {
	const id = "device-7"
	a, _ := w.connect("A", id, freshPersist)
	a.mustSub("A/read/#", "A/alert/#")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/secret/0", "secret:0", 1, false)
	if m := a.ExpectPublish(); string(m.Payload) != "secret:0" {
		t.Fatalf("A got %q first", m.Payload) // left unacknowledged
	}
	gwA.pub("A/read/secret/1", "secret:1", 1, false)
	gwA.pub("A/alert/m1", "secret:2", 2, false)
	gwA.pub("A/read/public/1", "pub:1", 1, false)
	w.waitQueued("A", id, 4)

	n, ack := w.connect(atk, id, persistSess)
	if !ack.SessionPresent {
		t.Fatalf("%s did not resume the session of its tenant", atk)
	}
	a.ExpectClosed()
	n.mustSub("A/read/public/#")
	gwA.pub("A/read/secret/2", "secret:3", 1, false)
	gwA.pub("A/read/public/ctl", "ctl:a", 1, false)
	got := n.until("ctl:a")
	noCrossing(t, atk, got, "secret:")
	hasPayloads(t, atk, got, "pub:1")
}
