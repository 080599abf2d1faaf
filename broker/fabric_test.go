package broker_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// The broker's side of a cluster, with brokers linked in one process by
// fakeCluster (fabric_fake_test.go), over real sockets.

// waitWatching waits until n watches (filter, share): interest reaches
// the fabric once the SUBSCRIBE changed the trie.
func waitWatching(t *testing.T, n *fakeNode, filter, share string) {
	t.Helper()
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return n.watching(filter, share) },
		fmt.Sprintf("%s watches %q", n.name, filter))
}

// TestFabricDeliversAcrossNodesOncePerSession: a message published on
// node A reaches a subscriber on node B, once although two of its
// filters match [MQTT-3.3.5-1], at QoS 0 and 1, for 3.1.1 and 5.0
// publishers; B never hands it back to the fabric (no loop); a 5.0
// publisher hears Success, not 0x10, since A cannot know B's subscribers.
func TestFabricDeliversAcrossNodesOncePerSession(t *testing.T) {
	cl := newFakeCluster(t)
	na, _, addrA := cl.start(t, "A", broker.Options{})
	nb, _, addrB := cl.start(t, "B", broker.Options{})

	sub := client5(t, addrB, "sub")
	codes := subscribe5(t, sub, 1, 7, packet.Subscription{Filter: "a/#", QoS: 1}, packet.Subscription{Filter: "a/+", QoS: 1})
	if !slices.Equal(codes, []packet.ReasonCode{1, 1}) {
		t.Fatalf("SUBACK %v", codes)
	}
	waitWatching(t, nb, "a/#", "")
	waitWatching(t, nb, "a/+", "")

	for _, tc := range []struct {
		v   packet.Version
		qos byte
	}{{packet.V311, 0}, {packet.V311, 1}, {packet.V5, 0}, {packet.V5, 1}} {
		name := fmt.Sprintf("%s-qos%d", tc.v, tc.qos)
		t.Run(name, func(t *testing.T) {
			pub, _ := mqtttest.Connect(t, addrA, tc.v, "pub-"+name, true)
			p := &packet.Publish{Topic: "a/" + name, QoS: tc.qos, Payload: []byte(name)}
			if tc.qos > 0 {
				p.PacketID = 1
			}
			pub.Send(p)
			if tc.qos > 0 {
				ack := expect[*packet.Puback](t, pub)
				if ack.ReasonCode != packet.Success {
					t.Fatalf("PUBACK %v, want Success: other nodes may have subscribers", ack.ReasonCode)
				}
			}
			got := sub.ExpectPublish()
			if got.Topic != p.Topic || string(got.Payload) != name || got.QoS != tc.qos {
				t.Fatalf("got %q %q QoS %d, want %q %q QoS %d", got.Topic, got.Payload, got.QoS, p.Topic, name, tc.qos)
			}
			if ids := sortedIDs(got); !slices.Equal(ids, []uint32{7, 7}) {
				t.Fatalf("subscription identifiers %v, want both subscriptions' [7 7] [MQTT-3.3.4-3]", ids)
			}
			ackPublish(t, sub, got)
			expectNothing(t, sub, quiet, "a second copy of the message [MQTT-3.3.5-1]")
		})
	}
	if fwd, _ := nb.forwarded(); len(fwd) != 0 {
		t.Fatalf("B forwarded %q, which came from the fabric", fwd)
	}
	if fwd, _ := na.forwarded(); len(fwd) != 4 {
		t.Fatalf("A forwarded %q, want its 4 publishes", fwd)
	}
}

// TestFabricShareGroupBalancedAcrossNodes: a $share group with a member
// on the publisher's node A and one on B gets every message once, and
// both members get some: the publisher's node leaves the group to the
// fabric instead of delivering to its own member too.
func TestFabricShareGroupBalancedAcrossNodes(t *testing.T) {
	cl := newFakeCluster(t)
	na, _, addrA := cl.start(t, "A", broker.Options{})
	nb, _, addrB := cl.start(t, "B", broker.Options{})
	ma := connect(t, addrA, "member-a", true)
	subscribe(t, ma, 1, "$share/g/s/#", 1)
	mb := connect(t, addrB, "member-b", true)
	subscribe(t, mb, 1, "$share/g/s/#", 1)
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return len(na.shares("s/#")) == 1 && len(nb.shares("s/#")) == 1 },
		"both nodes watch the share group")
	if sa, sb := na.shares("s/#"), nb.shares("s/#"); sa[0] != sb[0] {
		t.Fatalf("one share group, two keys: %q, %q", sa[0], sb[0])
	}

	pub := connect(t, addrA, "pub", true)
	const n = 10
	for i := range n {
		publish(t, pub, "s/x", 1, false, fmt.Sprint(i), uint16(i+1))
	}
	publish(t, pub, "s/x", 1, false, "end", n+1) // one of them gets it; read both until quiet
	seen := map[string]int{}
	per := map[string]int{}
	for name, c := range map[string]*mqtttest.Client{"a": ma, "b": mb} {
		for {
			p, err := c.Read(quiet * 2)
			if err != nil {
				break
			}
			pp, ok := p.(*packet.Publish)
			if !ok {
				t.Fatalf("%s: got %s", name, p.Type())
			}
			ackPublish(t, c, pp)
			seen[string(pp.Payload)]++
			per[name]++
		}
	}
	if len(seen) != n+1 {
		t.Fatalf("group received %d distinct messages, want %d: %v", len(seen), n+1, seen)
	}
	for m, k := range seen {
		if k != 1 {
			t.Fatalf("message %q delivered %d times to the group, want once", m, k)
		}
	}
	if per["a"] == 0 || per["b"] == 0 {
		t.Fatalf("deliveries per node %v: the group is not balanced across the nodes", per)
	}
}

// TestFabricRetainedAcrossNodes: a retained message set on A is sent to a
// new subscription on B [MQTT-3.3.1-6] with the retain flag
// [MQTT-3.3.1-8]; cleared on A, it is gone on B [MQTT-3.3.1-10]; A's own
// $SYS topics never reach the fabric, live or retained.
func TestFabricRetainedAcrossNodes(t *testing.T) {
	cl := newFakeCluster(t)
	na, ba, addrA := cl.start(t, "A", broker.Options{})
	_, bb, addrB := cl.start(t, "B", broker.Options{})
	if err := ba.StartSys(time.Hour, "test"); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, addrA, "pub", true)
	publish(t, pub, "r/t", 1, true, "v1", 1)

	s1 := connect(t, addrB, "s1", true)
	subscribe(t, s1, 1, "r/#", 1)
	got := s1.ExpectPublish()
	if got.Topic != "r/t" || string(got.Payload) != "v1" || !got.Retain {
		t.Fatalf("got %q %q retain %v, want the retained r/t v1", got.Topic, got.Payload, got.Retain)
	}
	ackPublish(t, s1, got)

	publish(t, pub, "r/t", 1, true, "", 2) // clears it everywhere
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { _, ok := bb.RetainedMessage("r/t"); return !ok }, "B cleared r/t")
	s2 := connect(t, addrB, "s2", true)
	subscribe(t, s2, 1, "r/#", 1)
	s2.ExpectNone(quiet)

	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { _, ok := ba.RetainedMessage("$SYS/broker/version"); return ok }, "A published $SYS")
	if _, ok := bb.RetainedMessage("$SYS/broker/version"); ok {
		t.Fatal("A's $SYS/broker/version is retained on B")
	}
	fwd, ret := na.forwarded()
	for _, tp := range append(fwd, ret...) {
		if strings.HasPrefix(tp, "$SYS") {
			t.Fatalf("A handed %q to the fabric", tp)
		}
	}
	if !slices.Contains(ret, "r/t") {
		t.Fatalf("A replicated %q, want r/t", ret)
	}
}

// TestFabricTakeoverAcrossNodes: a client id connecting on B takes the
// session over from A: A sends its connection DISCONNECT 0x8E (5.0) or
// closes it (3.1.1) [MQTT-3.1.4-2] and discards the session, whose
// subscription stops being A's interest; the same client id in another
// tenant on A is untouched (session keys are per tenant).
func TestFabricTakeoverAcrossNodes(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			cl := newFakeCluster(t)
			o := broker.Options{Authenticator: tenantAuth{}}
			na, ba, addrA := cl.start(t, "A", o)
			_, _, addrB := cl.start(t, "B", o)
			persistent := packet.Connect{}
			if v == packet.V5 {
				persistent.Properties.SessionExpiryInterval = 300
				persistent.Properties.Set(packet.PropSessionExpiryInterval)
			}
			old, _ := connectTenant(t, addrA, v, "t1", "dev-1", persistent)
			subscribe(t, old, 1, "dev/1/#", 1)
			other, _ := connectTenant(t, addrA, v, "t2", "dev-1", packet.Connect{CleanStart: true})
			waitWatching(t, na, "dev/1/#", "")

			nw, ack := connectTenant(t, addrB, v, "t1", "dev-1", persistent)
			if ack.ReasonCode != packet.Success {
				t.Fatalf("CONNACK on B %v", ack.ReasonCode)
			}
			if v == packet.V5 {
				expectDisconnect(t, old, packet.SessionTakenOver) // [MQTT-3.1.4-2]
			} else {
				expectClosedSilently(t, old)
			}
			mqtttest.Eventually(t, mqtttest.Timeout, func() bool { _, ok := ba.ClientStatsIn("t1", "dev-1"); return !ok },
				"A discarded the session taken over")
			mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return !na.watching("dev/1/#", "") },
				"A unwatched the discarded session's filter")
			// A clean session taken over ends on A, but B owns it now:
			// no Release from A.
			clean, _ := connectTenant(t, addrA, v, "t1", "dev-2", packet.Connect{CleanStart: true})
			connectTenant(t, addrB, v, "t1", "dev-2", packet.Connect{CleanStart: true})
			clean.ExpectClosed()
			mqtttest.Eventually(t, mqtttest.Timeout, func() bool { _, ok := ba.ClientStatsIn("t1", "dev-2"); return !ok },
				"A ended the clean session taken over")
			for _, k := range []string{"dev-1", "dev-2"} {
				if slices.Contains(na.released(), broker.SessionKey("t1", k)) {
					t.Fatalf("A released %s's session, which B owns now", k)
				}
			}
			answersPing(t, other, "t2's dev-1 on A")
			answersPing(t, nw, "t1's dev-1 on B")
		})
	}
}

// TestFabricClaimFailureRefusesConnect: when the cluster cannot record the
// session on this node, the CONNECT is refused as server unavailable:
// 5.0 CONNACK 0x88, 3.1.1 CONNACK 3 [MQTT-3.2.2-6].
func TestFabricClaimFailureRefusesConnect(t *testing.T) {
	cl := newFakeCluster(t)
	_, b, addr := cl.start(t, "A", broker.Options{})
	cl.mu.Lock()
	cl.claimErr = errors.New("no quorum")
	cl.mu.Unlock()

	c5 := mqtttest.Dial(t, addr, packet.V5)
	c5.Send(&packet.Connect{ClientID: "x5", CleanStart: true, KeepAlive: 60})
	ack := expectConnackRefused(t, c5, packet.ServerUnavailable)
	if !strings.Contains(ack.Properties.ReasonString, "no quorum") {
		t.Fatalf("reason string %q, want the cluster's error", ack.Properties.ReasonString)
	}
	c3 := mqtttest.Dial(t, addr, packet.V311)
	c3.Send(&packet.Connect{ClientID: "x3", CleanStart: true, KeepAlive: 60})
	expectRefused(t, c3, 3)
	if hasSession(b, "x5") || hasSession(b, "x3") {
		t.Fatal("a refused CONNECT left a session")
	}
}

// TestFabricInterestRefCounted: the fabric is told of a (filter, share)
// once, when the first local subscription to it appears, and told it is
// gone once, when the last one goes, whichever way it goes: UNSUBSCRIBE,
// a clean start taking over the session, the end of a clean session, the
// expiry of a 5.0 session. Shared and plain subscriptions to one filter
// are two keys.
func TestFabricInterestRefCounted(t *testing.T) {
	cl := newFakeCluster(t)
	n, b, addr := cl.start(t, "A", broker.Options{})

	c1 := connect(t, addr, "c1", true)
	subscribe(t, c1, 1, "x/#", 1)
	c2 := connect(t, addr, "c2", false)
	subscribe(t, c2, 1, "x/#", 1)
	subscribe(t, c2, 2, "x/#", 0) // replaces its own subscription: no new interest
	subscribe(t, c2, 3, "$share/g/x/#", 1)
	waitWatching(t, n, "x/#", "")
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return len(n.shares("x/#")) == 1 }, "share group watched")
	share := n.shares("x/#")[0]

	c1.Send(&packet.Unsubscribe{PacketID: 4, Filters: []string{"x/#"}})
	expect[*packet.Unsuback](t, c1)
	if w, u := n.calls("x/#", ""); w != 1 || u != 0 {
		t.Fatalf("after one of two subscribers left: %d Watch, %d Unwatch; want 1, 0", w, u)
	}

	// c2 comes back with a clean start: its old session and subscriptions
	// are discarded [MQTT-3.1.2-4].
	c2.Conn.Close()
	waitOffline(t, b, "c2")
	connect(t, addr, "c2", true)
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return !n.watching("x/#", "") && !n.watching("x/#", share) },
		"x/# and the share group unwatched")
	for _, k := range []string{"", share} {
		if w, u := n.calls("x/#", k); w != 1 || u != 1 {
			t.Fatalf("share %q: %d Watch, %d Unwatch; want 1, 1", k, w, u)
		}
	}

	// A clean session's end and a 5.0 session's expiry.
	c3 := connect(t, addr, "c3", true)
	subscribe(t, c3, 1, "y/#", 0)
	e, _ := session5(t, addr, "e", true, 1)
	sub5(t, e, 1, "z/#", 0, 0)
	waitWatching(t, n, "y/#", "")
	waitWatching(t, n, "z/#", "")
	c3.Send(&packet.Disconnect{})
	expectClosedSilently(t, c3)
	e.Conn.Close()
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return !n.watching("y/#", "") }, "y/# unwatched at c3's end")
	if n.watching("z/#", "") != hasSession(b, "e") {
		t.Fatal("z/# interest and e's session disagree")
	}
	mqtttest.Eventually(t, 5*time.Second, func() bool { return !n.watching("z/#", "") }, "z/# unwatched at e's expiry")
	released := n.released()
	for _, k := range []string{"c3", "e"} {
		if !slices.Contains(released, k) {
			t.Fatalf("released %q, want %q among them", released, k)
		}
	}
}

// TestFabricInterestRestored: the subscriptions of the sessions restored
// from the store at start-up are the new node's interest once it is
// bound.
func TestFabricInterestRestored(t *testing.T) {
	st := memstore.New()
	b1, addr := mqtttest.StartBroker(t, broker.Options{Store: st})
	c := connect(t, addr, "keep", false)
	subscribe(t, c, 1, "kept/#", 1)
	c.Send(&packet.Disconnect{})
	expectClosedSilently(t, c)
	waitOffline(t, b1, "keep")

	cl := newFakeCluster(t)
	n := cl.node("A")
	b2, err := broker.New(broker.Options{Store: st, Fabric: n})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Shutdown(t.Context())
	if !n.watching("kept/#", "") {
		t.Fatal("the restored subscription is not watched after New")
	}
	if w, _ := n.calls("kept/#", ""); w != 1 {
		t.Fatalf("%d Watch calls, want 1", w)
	}
}

// TestFabricInterestRevoked: a subscription that a policy reload revokes
// (Reauthorize) stops being the node's interest: the fabric is told when
// the last one of its filter goes, and not before.
func TestFabricInterestRevoked(t *testing.T) {
	cl := newFakeCluster(t)
	authz := &flipAuthorizer{}
	n, b, addr := cl.start(t, "A", broker.Options{Authorizer: authz})
	c1 := connect(t, addr, "c1", true)
	subscribe(t, c1, 1, "secret/#", 1)
	subscribe(t, c1, 2, "open/#", 1)
	c2 := connect(t, addr, "c2", true)
	subscribe(t, c2, 1, "secret/#", 1)
	waitWatching(t, n, "secret/#", "")

	authz.narrow.Store(true)
	if got := b.Reauthorize(); got != 2 {
		t.Fatalf("Reauthorize revoked %d subscriptions, want 2", got)
	}
	if n.watching("secret/#", "") {
		t.Fatal("secret/# still watched after both subscriptions were revoked")
	}
	if w, u := n.calls("secret/#", ""); w != 1 || u != 1 {
		t.Fatalf("secret/#: %d Watch, %d Unwatch; want 1, 1", w, u)
	}
	if !n.watching("open/#", "") {
		t.Fatal("open/#, still allowed, is no longer watched")
	}
}

// TestFabricWillsAndAdminPublishReachOtherNodes: a will sent on node A
// (its client's connection dropped) [MQTT-3.1.2-8] and a message the
// admin API publishes on A both reach a subscriber on node B.
func TestFabricWillsAndAdminPublishReachOtherNodes(t *testing.T) {
	cl := newFakeCluster(t)
	_, ba, addrA := cl.start(t, "A", broker.Options{})
	nb, _, addrB := cl.start(t, "B", broker.Options{})
	sub := client5(t, addrB, "sub")
	sub5(t, sub, 1, "status/#", 1, 0)
	waitWatching(t, nb, "status/#", "")

	dev := willConnect5(t, addrA, "dev", true, 0, 0, "status/dev")
	dev.Conn.Close() // no DISCONNECT: the will is due
	expectPub(t, sub, "status/dev", "gone")

	if _, err := ba.PublishAs(nil, broker.AdminMessage{Topic: "status/admin", Payload: []byte("hi"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	expectPub(t, sub, "status/admin", "hi")
}

// TestFabricKickWhileClaimingRefusesConnect: when another node takes a
// session over while this node's CONNECT of it is still being claimed
// (the other CONNECT is the newer), this CONNECT is refused as server
// unavailable instead of leaving the client connected on two nodes
// [MQTT-3.1.4-2].
func TestFabricKickWhileClaimingRefusesConnect(t *testing.T) {
	cl := newFakeCluster(t)
	na, b, addr := cl.start(t, "A", broker.Options{})
	nb := cl.node("B")
	cl.mu.Lock()
	cl.duringClaim = func(n *fakeNode, key string) {
		if n != na {
			return
		}
		cl.mu.Lock()
		cl.owner[key] = nb // B's claim wins the race
		cl.mu.Unlock()
		n.host.KickRemote(key)
	}
	cl.mu.Unlock()

	c := mqtttest.Dial(t, addr, packet.V5)
	c.Send(&packet.Connect{ClientID: "raced", CleanStart: true, KeepAlive: 60})
	expectConnackRefused(t, c, packet.ServerUnavailable)
	if hasSession(b, "raced") {
		t.Fatal("the CONNECT that lost the race left a session")
	}
	cl.mu.Lock()
	cl.duringClaim = nil
	cl.mu.Unlock()
	roundTrip(t, addr) // the node serves on
}
