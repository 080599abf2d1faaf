package interop_test

import (
	"fmt"
	"testing"

	"github.com/petrel-mqtt/petrel/packet"
)

// Share groups are per tenant (DESIGN.md section 3): A's and the
// attacker's members of $share/g/common/feed are two groups, each getting
// every message once [MQTT-4.8.2-3]; when a member leaves, its group's
// messages go to its group's other members, never to the other tenant's.

func shareScenarios() []scenario {
	return []scenario{
		{name: "share/common-group/member-leaves", run: func(t *testing.T, w *world, atk string) { shareLeave(t, w, atk, false) }},
		{name: "share/common-group/persistent-member-leaves", stores: []string{"mem", "disk"}, tweak: windowOfOne,
			run: func(t *testing.T, w *world, atk string) { shareLeave(t, w, atk, true) }},
		{name: "share/attacker-member-leaves", run: shareAttackerLeaves},
		{name: "share/redistribution-to-denied-member", attackers: []string{"A-deny", "A-deny-jwt"}, tweak: windowOfOne,
			run: shareToDeniedMember},
	}
}

// countPayloads counts got's messages with each payload.
func countPayloads(got []*packet.Publish) map[string]int {
	m := map[string]int{}
	for _, p := range got {
		m[string(p.Payload)]++
	}
	return m
}

// shareLeave: members a1, a2 (tenant A) and b1 (the attacker) in
// $share/g/common/feed, a1 and a2 also in $share/g/A/read/#; a2 leaves
// (persistent: offline with its session, a message in flight with a
// window of one); n messages are published on each. The attacker's group
// gets every common message once and none of A's; A's a1 gets every
// message a2 does not hold.
func shareLeave(t *testing.T, w *world, atk string, persistent bool) {
	s := cleanSess
	if persistent {
		s = freshPersist
	}
	a1, _ := w.connect("A", "a1", cleanSess)
	a2, _ := w.connect("A", "a2", s)
	a1.mustSub("$share/g/common/feed", "$share/g/A/read/#", "A/read/ctl")
	a2.mustSub("$share/g/common/feed", "$share/g/A/read/#")
	b1, _ := w.connect(atk, "b1", cleanSess)
	codes := b1.sub(0, "$share/g/common/feed", "$share/g/A/read/#", "B/read/ctl")
	if codes[0].IsError() || codes[2].IsError() {
		t.Fatalf("%s: SUBACK %v", atk, codes)
	}
	if codes[1] != w.refused() {
		t.Errorf("CROSSING: %s joined $share/g/A/read/#: SUBACK %v", atk, codes[1])
	}
	pubA, _ := w.connect("A", "feeder", cleanSess)
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	pubA.pub("common/feed", "feed:warm", 1, false)
	gwA.pub("A/read/m1", "secret:warm", 1, false)
	// a2 holds what it got and leaves.
	held := a2.drain()
	if persistent {
		a2.bye("A")
	} else {
		_ = a2.Conn.Close()
		waitGone(w, "A", "a2")
	}
	const n = 6
	for i := range n {
		pubA.pub("common/feed", fmt.Sprintf("feed:%d", i), 1, false)
		gwA.pub("A/read/m1", fmt.Sprintf("secret:%d", i), 1, false)
	}
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	gotB := b1.until("ctl:b")
	noCrossing(t, atk, gotB, "secret:")
	cb := countPayloads(gotB)
	for i := range n {
		if k := cb[fmt.Sprintf("feed:%d", i)]; k != 1 {
			t.Errorf("CROSSING: %s's group got feed:%d %d times, want once (groups per tenant)", atk, i, k)
		}
	}
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	ca := countPayloads(a1.until("ctl:a"))
	for _, m := range held {
		ca[string(m.Payload)]++
	}
	for i := range n {
		for _, p := range []string{"feed:%d", "secret:%d"} {
			if k := ca[fmt.Sprintf(p, i)]; k != 1 && !persistent {
				t.Errorf("A's group got %s %d times, want once", fmt.Sprintf(p, i), k)
			} else if k > 1 {
				t.Errorf("A's group got %s %d times", fmt.Sprintf(p, i), k)
			}
		}
	}
	if persistent {
		// What went to a2's offline session is a2's: it resumes it (the
		// disk store: after a restart too).
		if w.store == "disk" {
			w.restart()
		}
		a2, ack := w.connect("A", "a2", persistSess)
		if !ack.SessionPresent {
			t.Fatal("a2's session is gone")
		}
		gw, _ := w.connect("gwA", "gw2", cleanSess)
		a2.mustSub("A/read/ctl")
		gw.pub("A/read/ctl", "ctl:a2", 1, false)
		for _, m := range a2.until("ctl:a2") {
			ca[string(m.Payload)]++
		}
		for i := range n {
			for _, p := range []string{"feed:%d", "secret:%d"} {
				if k := ca[fmt.Sprintf(p, i)]; k < 1 {
					t.Errorf("A's group lost %s", fmt.Sprintf(p, i))
				}
			}
		}
	}
}

// shareAttackerLeaves: the attacker's member of $share/g/common/feed
// leaves; A's group keeps getting every message, the attacker's next
// member of its own group gets every message once.
func shareAttackerLeaves(t *testing.T, w *world, atk string) {
	a1, _ := w.connect("A", "a1", cleanSess)
	a1.mustSub("$share/g/common/feed", "A/read/ctl")
	b1, _ := w.connect(atk, "b1", cleanSess)
	b1.mustSub("$share/g/common/feed")
	pubA, _ := w.connect("A", "feeder", cleanSess)
	pubA.pub("common/feed", "feed:warm", 1, false)
	_ = b1.Conn.Close()
	waitGone(w, tenantOf(atk), "b1")
	b2, _ := w.connect(atk, "b2", cleanSess)
	b2.mustSub("$share/g/common/feed", "B/read/ctl")
	const n = 4
	for i := range n {
		pubA.pub("common/feed", fmt.Sprintf("feed:%d", i), 1, false)
	}
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	ca := countPayloads(a1.until("ctl:a"))
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	cb := countPayloads(b2.until("ctl:b"))
	for i := range n {
		f := fmt.Sprintf("feed:%d", i)
		if ca[f] != 1 || cb[f] != 1 {
			t.Errorf("%s: A's group got it %d times, %s's %d; want once each", f, ca[f], atk, cb[f])
		}
	}
}

// shareToDeniedMember: in tenant A's group $share/g/A/read/#, the full
// reader may receive A/read/secret/..., the deny-role principal may not.
// The full reader holds secret messages (one in flight, the rest queued,
// with a window of one) and goes away: its messages go to other members
// that may receive them (5.0 section 4.8.2), never to the denied one.
func shareToDeniedMember(t *testing.T, w *world, atk string) {
	full, _ := w.connect("A", "full", cleanSess)
	full.mustSub("$share/g/A/read/#")
	d, _ := w.connect(atk, "deny", cleanSess)
	d.mustSub("$share/g/A/read/#", "A/read/ctl")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	for i := range 4 {
		gwA.pub("A/read/secret/m1", fmt.Sprintf("secret:%d", i), 1, false)
	}
	if m := full.ExpectPublish(); string(m.Payload) != "secret:0" {
		t.Fatalf("the full reader got %q first", m.Payload) // left unacknowledged
	}
	w.waitQueued("A", "full", 4)
	_ = full.Conn.Close()
	waitGone(w, "A", "full")
	gwA.pub("A/read/public/1", "ok:1", 1, false) // the group's only member now
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	got := d.until("ctl:a")
	noCrossing(t, atk, got, "secret:")
	hasPayloads(t, atk, got, "ok:1")
}
