package interop_test

import (
	"testing"

	"github.com/petrel-mqtt/petrel/packet"
)

// Client id reuse: the attacker connects with tenant A's client id. Client
// ids are a namespace per tenant (DESIGN.md section 3): the attacker gets
// a session of its own (session present 0 [MQTT-3.2.2-2] in its own
// namespace), none of A's messages, and A is neither kicked
// [MQTT-3.1.4-2], nor loses its session [MQTT-3.1.2-4], nor its will
// [MQTT-3.1.3-9].

// reuseModes are the attacker's CONNECTs: clean session 1 / 0, and for
// 5.0 clean start 0 with expiry 0 and clean start 1 with an expiry.
var reuseModes = []struct {
	name     string
	s        sess
	versions []packet.Version
}{
	{"clean1", cleanSess, nil},
	{"clean0", persistSess, nil},
	{"clean0-expiry0", sess{clean: false}, []packet.Version{packet.V5}},
	{"clean1-expiryN", freshPersist, []packet.Version{packet.V5}},
}

func reuseScenarios() []scenario {
	var out []scenario
	for _, m := range reuseModes {
		out = append(out,
			scenario{name: "reuse/A-online/" + m.name, versions: m.versions,
				run: func(t *testing.T, w *world, atk string) { reuseOnline(t, w, atk, m.s) }},
			scenario{name: "reuse/A-offline-queued/" + m.name, versions: m.versions, stores: []string{"mem", "disk"},
				run: func(t *testing.T, w *world, atk string) { reuseOffline(t, w, atk, m.s) }},
		)
	}
	out = append(out,
		scenario{name: "reuse/A-delayed-will/clean1",
			run: func(t *testing.T, w *world, atk string) { reuseDelayedWill(t, w, atk, cleanSess) }},
		scenario{name: "reuse/A-delayed-will/clean0",
			run: func(t *testing.T, w *world, atk string) { reuseDelayedWill(t, w, atk, persistSess) }},
		scenario{name: "reuse/A-assigned-id", run: reuseAssignedID},
	)
	return out
}

// reuseOnline: A online with a persistent session; the attacker connects
// with A's client id.
func reuseOnline(t *testing.T, w *world, atk string, s sess) {
	const id = "meter-001"
	a, _ := w.connect("A", id, persistSess)
	a.mustSub("A/read/#")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwB, _ := w.connect("gwB", "gw", cleanSess)

	b, ack := w.connect(atk, id, s)
	if ack.SessionPresent {
		t.Errorf("CROSSING: %s resumed tenant A's session (session present 1)", atk)
	}
	b.mustSub("B/read/#")
	gwA.pub("A/read/m1/gas", "secret:1", 1, false)
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	noCrossing(t, atk, b.until("ctl:b"), "secret:")

	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A", a.until("ctl:a"), "secret:1")
	a.alive()
}

// reuseOffline: A offline with QoS 1 and 2 messages queued; the attacker
// connects with A's client id; then (disk store: after a restart) A
// resumes its session and gets them.
func reuseOffline(t *testing.T, w *world, atk string, s sess) {
	const id = "meter-001"
	a, _ := w.connect("A", id, freshPersist)
	a.mustSub("A/read/#")
	a.bye("A")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/m1/gas", "secret:1", 1, false)
	gwA.pub("A/read/m1/gas", "secret:2", 2, false)
	w.waitQueued("A", id, 2)

	b, ack := w.connect(atk, id, s)
	if ack.SessionPresent {
		t.Errorf("CROSSING: %s resumed tenant A's session (session present 1)", atk)
	}
	b.mustSub("B/read/#")
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	noCrossing(t, atk, b.until("ctl:b"), "secret:")
	b.bye("B")

	if w.store == "disk" {
		w.restart()
		gwA, _ = w.connect("gwA", "gw", cleanSess)
	}
	a, ack = w.connect("A", id, persistSess)
	if !ack.SessionPresent {
		t.Fatalf("CROSSING: tenant A's session is gone after %s used its client id", atk)
	}
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A", a.until("ctl:a"), "secret:1", "secret:2")
}

// reuseDelayedWill: A (5.0) ends abnormally with a will delayed 1 s; the
// attacker connects with A's client id before it is due; the will is
// still published.
func reuseDelayedWill(t *testing.T, w *world, atk string, s sess) {
	const id = "meter-001"
	watch, _ := w.connect("A-other", "watch", cleanSess)
	watch.mustSub("A/alert/#")
	will := &packet.Will{Topic: "A/alert/will", Payload: []byte("will:A"), QoS: 1}
	will.Properties.WillDelayInterval = 1
	will.Properties.Set(packet.PropWillDelayInterval)
	a, _ := w.connectWith("A", id, freshPersist, connectOpts{will: will, v: packet.V5})
	_ = a.Conn.Close() // an abnormal end: the will is due after its delay

	b, ack := w.connect(atk, id, s)
	if ack.SessionPresent {
		t.Errorf("CROSSING: %s resumed tenant A's session (session present 1)", atk)
	}
	// The will is the control: it arrives, and nothing else of A's went
	// to the attacker.
	watch.until("will:A")
	b.mustSub("B/read/#")
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	noCrossing(t, atk, b.until("ctl:b"), "will:")
	b.alive()
}

// reuseAssignedID: A (5.0) connects with an empty client id and is
// assigned one [MQTT-3.2.2-16]; the attacker connects with that id.
func reuseAssignedID(t *testing.T, w *world, atk string) {
	a, ack := w.connectWith("A", "", freshPersist, connectOpts{v: packet.V5})
	id := ack.Properties.AssignedClientIdentifier
	if id == "" {
		t.Fatal("no assigned client identifier")
	}
	a.id = id
	a.mustSub("A/read/#")
	b, ack := w.connect(atk, id, persistSess)
	if ack.SessionPresent {
		t.Errorf("CROSSING: %s resumed tenant A's assigned session %q", atk, id)
	}
	b.mustSub("B/read/#")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	gwA.pub("A/read/m1/gas", "secret:1", 1, false)
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	noCrossing(t, atk, b.until("ctl:b"), "secret:")
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A", a.until("ctl:a"), "secret:1")
	a.alive()
}
