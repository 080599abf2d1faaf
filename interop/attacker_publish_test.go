package interop_test

import (
	"strings"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// Publishing into tenant A: the attacker publishes to A's topics at each
// QoS, retained, as a will, through a 5.0 topic alias [MQTT-3.3.2-12] and
// with a response topic naming A. The broker closes the connection (5.0:
// DISCONNECT 0x87) or, with ack-and-drop, acknowledges with 0x87 and
// drops; tenant A receives none of it, live or retained.

func ackAndDrop(o *broker.Options) { o.UnauthorizedPublish = broker.UnauthorizedAckAndDrop }

func publishScenarios() []scenario {
	var out []scenario
	for _, mode := range []struct {
		name  string
		tweak func(*broker.Options)
	}{{"close", nil}, {"ack-and-drop", ackAndDrop}} {
		for _, k := range []struct {
			name   string
			qos    byte
			retain bool
		}{{"qos0", 0, false}, {"qos1", 1, false}, {"qos2", 2, false}, {"retained", 1, true}} {
			out = append(out, scenario{name: "publish/" + k.name + "/" + mode.name, tweak: mode.tweak, versions: allVersions,
				run: func(t *testing.T, w *world, atk string) { publishInto(t, w, atk, k.qos, k.retain) }})
		}
	}
	out = append(out,
		scenario{name: "publish/retained-clear", run: publishRetainedClear},
		scenario{name: "publish/retained-clear/ack-and-drop", tweak: ackAndDrop, run: publishRetainedClear},
		scenario{name: "publish/will", versions: allVersions, run: publishWill},
		scenario{name: "publish/topic-alias", versions: []packet.Version{packet.V5}, tweak: ackAndDrop, run: publishAlias},
		scenario{name: "publish/response-topic", versions: []packet.Version{packet.V5}, tweak: ackAndDrop, run: publishResponseTopic},
	)
	return out
}

// victimA is tenant A's subscriber to everything A has.
func victimA(w *world) *peer {
	w.t.Helper()
	a, _ := w.connect("A", "a-reader", cleanSess)
	a.mustSub("A/read/#", "A/alert/#")
	return a
}

// checkVictim publishes A's control and checks that A got it and nothing
// the attacker sent.
func checkVictim(t *testing.T, w *world, a *peer) {
	t.Helper()
	gwA, _ := w.connect("gwA", "gw-ctl", cleanSess)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	noCrossing(t, "A", a.until("ctl:a"), "evil:")
}

// refusedPublish fails unless the result of the attacker's publish is a
// refusal: the connection closed, or with ack-and-drop an error code.
func refusedPublish(t *testing.T, w *world, what, res string, qos byte) {
	t.Helper()
	switch {
	case res == "closed":
		if w.opts.UnauthorizedPublish == broker.UnauthorizedAckAndDrop {
			t.Errorf("%s: connection closed, want ack-and-drop", what)
		}
	case strings.HasPrefix(res, "refused"):
	case res == "ok" && (qos == 0 || w.v != packet.V5) && w.opts.UnauthorizedPublish == broker.UnauthorizedAckAndDrop:
		// QoS 0 has no acknowledgement, and a 3.x PUBACK or PUBREC no
		// reason code: the victim's side shows the drop.
	default:
		t.Errorf("CROSSING: %s accepted: %s", what, res)
	}
}

func publishInto(t *testing.T, w *world, atk string, qos byte, retain bool) {
	a := victimA(w)
	b, _ := w.connect(atk, "spy", cleanSess)
	res := b.tryPub(&packet.Publish{Topic: "A/read/m1/gas", QoS: qos, Retain: retain, Payload: []byte("evil:1")})
	refusedPublish(t, w, atk+" publishing to A/read/m1/gas", res, qos)
	if res != "closed" {
		res = b.tryPub(&packet.Publish{Topic: "A/alert/m1/leak", QoS: qos, Retain: retain, Payload: []byte("evil:2")})
		refusedPublish(t, w, atk+" publishing to A/alert/m1/leak", res, qos)
	}
	checkVictim(t, w, a)
	if retain {
		// A new subscriber of A gets A's retained message, not the
		// attacker's.
		gwA, _ := w.connect("gwA", "gw", cleanSess)
		gwA.pub("A/read/zz", "ok:retained", 1, true)
		late, _ := w.connect("A-other", "late", cleanSess)
		late.mustSub("A/read/#", "A/alert/#")
		gwA.pub("A/read/ctl", "ctl:late", 1, false)
		got := late.until("ctl:late")
		noCrossing(t, "A (late subscriber)", got, "evil:")
		hasPayloads(t, "A (late subscriber)", got, "ok:retained")
	}
}

// publishWill: a will on A's topic is refused at CONNECT (0x87 / 5).
func publishWill(t *testing.T, w *world, atk string) {
	a := victimA(w)
	will := &packet.Will{Topic: "A/alert/m1/leak", Payload: []byte("evil:will"), QoS: 1}
	b, ack := w.try(atk, "spy", cleanSess, connectOpts{will: will})
	if ack.ReasonCode == packet.Success {
		t.Errorf("CROSSING: %s connected with a will on A/alert/m1/leak", atk)
		_ = b.Conn.Close() // the will is due now
		waitGone(w, tenantOf(atk), "spy")
	}
	checkVictim(t, w, a)
}

// waitGone waits until the session is gone or offline.
func waitGone(w *world, tenant, id string) {
	w.t.Helper()
	eventually(w.t, func() bool {
		st, ok := w.b.ClientStatsIn(tenant, id)
		return !ok || !st.Online
	}, id+" offline")
}

// publishAlias: a topic alias set on the attacker's own topic, then
// re-pointed at A's topic by a refused publish, then used alone: each
// publish is authorized on the topic the alias resolves to.
func publishAlias(t *testing.T, w *world, atk string) {
	a := victimA(w)
	b, _ := w.connect(atk, "spy", cleanSess)
	aliased := func(topic string, alias uint16, payload string) *packet.Publish {
		m := &packet.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}
		m.Properties.TopicAlias = alias
		m.Properties.Set(packet.PropTopicAlias)
		return m
	}
	if res := b.tryPub(aliased("B/read/m1", 1, "b:1")); res != "ok" {
		t.Fatalf("%s's own aliased publish: %s", atk, res)
	}
	refusedPublish(t, w, "alias 1 re-pointed at A/read/m1", b.tryPub(aliased("A/read/m1", 1, "evil:1")), 1)
	refusedPublish(t, w, "alias 1 alone", b.tryPub(aliased("", 1, "evil:2")), 1)
	refusedPublish(t, w, "alias 2 set by a refused publish", b.tryPub(aliased("A/alert/m1", 2, "evil:3")), 1)
	refusedPublish(t, w, "alias 2 alone", b.tryPub(aliased("", 2, "evil:4")), 1)
	checkVictim(t, w, a)
}

// publishResponseTopic: request/response [MQTT-4.10]: the attacker's
// request on its own topic names A's topic as response topic (nothing is
// published there by the broker), and a request to A's topic is refused.
func publishResponseTopic(t *testing.T, w *world, atk string) {
	a := victimA(w)
	b, _ := w.connect(atk, "spy", cleanSess)
	req := func(topic, resp string) *packet.Publish {
		m := &packet.Publish{Topic: topic, QoS: 1, Payload: []byte("evil:req")}
		m.Properties.ResponseTopic = resp
		m.Properties.Set(packet.PropResponseTopic)
		m.Properties.CorrelationData = []byte("evil:corr")
		m.Properties.Set(packet.PropCorrelationData)
		return m
	}
	if res := b.tryPub(req("B/req", "A/read/m1/resp")); res != "ok" {
		t.Fatalf("%s's own request: %s", atk, res)
	}
	refusedPublish(t, w, "request to A/read/m1/cmd", b.tryPub(req("A/read/m1/cmd", "B/resp")), 1)
	gwA, _ := w.connect("gwA", "gw-ctl", cleanSess)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	got := a.until("ctl:a")
	noCrossing(t, "A", got, "evil:")
	for _, m := range got {
		if strings.HasPrefix(string(m.Properties.CorrelationData), "evil:") {
			t.Errorf("CROSSING: A got the attacker's correlation data on %s", m.Topic)
		}
	}
}

// publishRetainedClear: an empty retained message clears a topic's
// retained message [MQTT-3.3.1-10]; the attacker's on A's topic is
// refused and A's retained message stays.
func publishRetainedClear(t *testing.T, w *world, atk string) {
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/m1/state", "ok:retained", 1, true)
	b, _ := w.connect(atk, "spy", cleanSess)
	res := b.tryPub(&packet.Publish{Topic: "A/read/m1/state", QoS: 1, Retain: true})
	refusedPublish(t, w, atk+" clearing A/read/m1/state", res, 1)
	late, _ := w.connect("A", "late", cleanSess)
	late.mustSub("A/read/#")
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	got := late.until("ctl:a")
	hasPayloads(t, "A (new subscriber)", got, "ok:retained")
}
