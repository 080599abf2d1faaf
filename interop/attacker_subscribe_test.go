package interop_test

import (
	"strings"
	"testing"

	"github.com/petrel-mqtt/petrel/packet"
)

// Subscriptions: the attacker subscribes to tenant A's topics directly,
// through wildcards, $share, $SYS, with a subscription identifier (5.0).
// Each filter is refused (SUBACK 0x80 / 0x87 [MQTT-3.9.3-2]) and nothing
// of A's is delivered, live or retained [MQTT-3.3.1-9]. Another principal
// of A with deny filters gets a wildcard over them granted, and the denied
// topics are not delivered.

// tenantBFilters are what tenant B tries; every one must be refused.
var tenantBFilters = []string{
	"A/read/#", "A/read/m1/gas", "A/alert/+", "A/#", "#", "+/#", "+/read/#", "+/+/+/gas",
	"$share/g/A/read/#", "$share/g/#", "$share/g/+/read/#", "$SYS/#", "$share/g/$SYS/#",
}

// denyFilters are what the deny-role principal of A tries: granted marks
// a wildcard over the denied topics, granted with them filtered.
var denyFilters = []struct {
	filter  string
	granted bool
}{
	{"A/#", true},
	{"A/read/#", true},
	{"A/+/secret/#", true},
	{"$share/g/A/#", true},
	{"A/read/secret/#", false},
	{"A/alert/#", false},
	{"#", false},
}

func subscribeScenarios() []scenario {
	var out []scenario
	for _, f := range tenantBFilters {
		out = append(out, scenario{name: "subscribe/" + f, versions: allVersions,
			run: func(t *testing.T, w *world, atk string) { subscribeRefused(t, w, atk, f) }})
	}
	for _, f := range denyFilters {
		out = append(out, scenario{name: "subscribe-deny/" + f.filter, attackers: []string{"A-deny", "A-deny-jwt"},
			run: func(t *testing.T, w *world, atk string) { subscribeDenied(t, w, atk, f.filter, f.granted) }})
	}
	out = append(out,
		scenario{name: "subscribe/outbound-aliases", versions: []packet.Version{packet.V5}, run: subscribeAliases},
		scenario{name: "subscribe/no-local-same-client-id", versions: []packet.Version{packet.V5}, run: subscribeNoLocal},
	)
	return out
}

// subscribeRefused: A's retained and live messages, the attacker's filter.
func subscribeRefused(t *testing.T, w *world, atk, filter string) {
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/m1/gas", "secret:retained", 1, true)
	gwA.pub("A/alert/m1/leak", "secret:retained-alert", 1, true)
	victim, _ := w.connect("A", "a-reader", cleanSess)
	victim.mustSub("A/read/#", "A/alert/#")

	b, _ := w.connect(atk, "spy", cleanSess)
	codes := b.sub(7, filter, "B/read/#")
	if codes[0] != w.refused() {
		t.Errorf("CROSSING: %s's subscription to %s granted: SUBACK %v, want %v", atk, filter, codes[0], w.refused())
	}
	if codes[1].IsError() {
		t.Fatalf("%s: B/read/# refused: %v", atk, codes[1])
	}
	gwA.pub("A/read/m1/gas", "secret:live", 1, false)
	gwA.pub("A/alert/m1/leak", "secret:alarm", 2, false)
	gwA.pub("A/read/m1/gas", "secret:qos0", 0, false)
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	noCrossing(t, atk, b.until("ctl:b"), "secret:")

	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A", victim.until("ctl:a"), "secret:retained", "secret:retained-alert", "secret:live", "secret:alarm", "secret:qos0")
}

// subscribeDenied: the deny-role principal of A subscribes filter with a
// control filter beside it; the denied topics (A/read/secret/#,
// A/alert/#) never reach it, live or retained; what the role allows does.
func subscribeDenied(t *testing.T, w *world, atk, filter string, granted bool) {
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/secret/m1", "secret:retained", 1, true)
	gwA.pub("A/alert/m1/leak", "secret:retained-alert", 1, true)
	gwA.pub("A/read/public/m1", "ok:retained", 1, true)

	d, _ := w.connect(atk, "deny", cleanSess)
	codes := d.sub(3, filter, "A/read/ctl")
	switch {
	case granted && codes[0].IsError():
		t.Fatalf("%s: %s refused (%v); its role allows it with the denied topics filtered", atk, filter, codes[0])
	case !granted && codes[0] != w.refused():
		t.Errorf("CROSSING: %s's subscription to %s granted: SUBACK %v", atk, filter, codes[0])
	}
	gwA.pub("A/read/secret/m1", "secret:live", 1, false)
	gwA.pub("A/alert/m1/leak", "secret:alarm", 2, false)
	gwA.pub("A/read/public/m1", "ok:live", 1, false)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	got := d.until("ctl:a")
	noCrossing(t, atk, got, "secret:")
	if granted && strings.HasPrefix(filter, "A/") && !strings.Contains(filter, "secret") {
		hasPayloads(t, atk, got, "ok:retained", "ok:live")
	}
}

// subscribeAliases: both tenants' subscribers accept topic aliases; the
// broker's aliases are per connection [MQTT-3.3.2-10]: every PUBLISH the
// attacker receives names, or aliases, one of its own topics.
func subscribeAliases(t *testing.T, w *world, atk string) {
	a, _ := w.connectWith("A", "a-reader", cleanSess, connectOpts{aliasMax: 4})
	a.mustSub("A/read/#")
	b, _ := w.connectWith(atk, "spy", cleanSess, connectOpts{aliasMax: 4})
	b.mustSub("B/read/#")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	for range 3 {
		gwA.pub("A/read/m1/gas", "secret:1", 1, false)
		gwB.pub("B/read/m1/gas", "b:1", 1, false)
	}
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	got := b.until("ctl:b")
	noCrossing(t, atk, got, "secret:")
	aliases := map[uint16]string{}
	for _, m := range got {
		topic := m.Topic
		if m.Properties.Has(packet.PropTopicAlias) {
			if topic == "" {
				topic = aliases[m.Properties.TopicAlias]
			} else {
				aliases[m.Properties.TopicAlias] = topic
			}
		}
		if !strings.HasPrefix(topic, "B/") {
			t.Errorf("CROSSING: %s got a message on %q (alias %d)", atk, topic, m.Properties.TopicAlias)
		}
	}
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A", a.until("ctl:a"), "secret:1")
}

// subscribeNoLocal: No Local [MQTT-3.8.3-3] spares the publisher's own
// session, not a session of the same client id in another tenant: A and
// the attacker, both "meter-001", subscribe common/nl with No Local; what
// one publishes there reaches the other, not itself, and the attacker's
// No Local subscription to A's topic is refused like any other.
func subscribeNoLocal(t *testing.T, w *world, atk string) {
	const id = "meter-001"
	a, _ := w.connect("A", id, cleanSess)
	b, _ := w.connect(atk, id, cleanSess)
	nl := func(c *peer, filters ...string) []packet.ReasonCode {
		s := &packet.Subscribe{PacketID: c.nextPID()}
		for _, f := range filters {
			s.Subscriptions = append(s.Subscriptions, packet.Subscription{Filter: f, QoS: 1, NoLocal: true})
		}
		c.Send(s)
		ack, ok := c.Expect().(*packet.Suback)
		if !ok {
			t.Fatalf("%s: no SUBACK", c.who)
		}
		return ack.ReasonCodes
	}
	if codes := nl(a, "common/nl", "A/read/ctl"); codes[0].IsError() || codes[1].IsError() {
		t.Fatalf("A: SUBACK %v", codes)
	}
	if codes := nl(b, "common/nl", "A/read/#", "B/read/ctl"); codes[0].IsError() || codes[1] != w.refused() || codes[2].IsError() {
		t.Errorf("CROSSING or refusal: %s's SUBACK %v, want [granted %v granted]", atk, codes, w.refused())
	}
	b.pub("common/nl", "from-b", 1, false)
	a.pub("common/nl", "from-a", 1, false)
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/secret/1", "secret:1", 1, false)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	gotA := a.until("ctl:a")
	hasPayloads(t, "A", gotA, "from-b")
	if countPayloads(gotA)["from-a"] != 0 {
		t.Errorf("A got its own message through No Local")
	}
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	gotB := b.until("ctl:b")
	noCrossing(t, atk, gotB, "secret:")
	hasPayloads(t, atk, gotB, "from-a")
}
