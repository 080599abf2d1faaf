package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// persistentConnect is a CONNECT resuming (or starting) a persistent
// session of version v.
func persistentConnect(v packet.Version) packet.Connect {
	p := packet.Connect{}
	if v == packet.V5 {
		p.Properties.SessionExpiryInterval = 3600
		p.Properties.Set(packet.PropSessionExpiryInterval)
	}
	return p
}

// payloadsOf reads n PUBLISH packets from c, completing their QoS flows
// (readPublishes), and returns their payloads in arrival order.
func payloadsOf(t *testing.T, c *mqtttest.Client, n int) []string {
	t.Helper()
	var got []string
	for _, p := range readPublishes(t, c, n, nil) {
		got = append(got, string(p.Payload))
	}
	return got
}

func want(prefix string, from, to int) []string {
	var w []string
	for i := from; i < to; i++ {
		w = append(w, fmt.Sprintf("%s%d", prefix, i))
	}
	return w
}

func sameList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d messages %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: message %d is %q, want %q (got %v)", what, i, got[i], want[i], got)
		}
	}
}

// TestLogDeliversPersistentSessionsOnce: in a cluster with a message log
// a QoS 1/2 message reaches a persistent session on another node through
// the log, once (the live copy is left to the log), in order; a clean
// session on that node gets it live; the publisher's ack came after the
// log stored it.
func TestLogDeliversPersistentSessionsOnce(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			cl := newLogCluster(t)
			o := broker.Options{Authenticator: tenantAuth{}}
			na, _, addrA := cl.start(t, "A", o)
			_, _, addrB := cl.start(t, "B", o)
			sub, _ := connectTenant(t, addrA, v, "t1", "sub", persistentConnect(v))
			subscribe(t, sub, 1, "d/#", 2)
			clean, _ := connectTenant(t, addrA, v, "t1", "clean", packet.Connect{CleanStart: true})
			subscribe(t, clean, 1, "d/#", 1)
			waitWatching(t, na.fakeNode, "d/#", "")

			pub, _ := connectTenant(t, addrB, v, "t1", "pub", packet.Connect{CleanStart: true})
			for i := 0; i < 20; i++ {
				publish(t, pub, "d/x", byte(1+i%2), false, fmt.Sprintf("m%d", i), uint16(i+1))
				if logged := cl.l.stored(); logged != i+1 { // the ack came after the log's
					t.Fatalf("after %d acknowledged publishes the log holds %d", i+1, logged)
				}
			}
			sameList(t, "persistent subscriber", payloadsOf(t, sub, 20), want("m", 0, 20))
			sub.ExpectNone(200 * time.Millisecond) // no second copy from the live path
			sameList(t, "clean subscriber", payloadsOf(t, clean, 20), want("m", 0, 20))
		})
	}
}

// TestAdoptedSessionResumesOnAnotherNode: a persistent session with
// queued QoS 1 and QoS 2 messages, held by node A, is resumed on node B
// after A is gone: session present, every message once, in order, and
// its subscription keeps delivering.
func TestAdoptedSessionResumesOnAnotherNode(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			cl := newLogCluster(t)
			o := broker.Options{Authenticator: tenantAuth{}}
			na, ba, addrA := cl.start(t, "A", o)
			_, bb, addrB := cl.start(t, "B", o)
			sub, _ := connectTenant(t, addrA, v, "t1", "sub", persistentConnect(v))
			subscribe(t, sub, 1, "q1/#", 1)
			subscribe(t, sub, 2, "q2/#", 2)
			leave(sub)
			mqtttest.Eventually(t, mqtttest.Timeout, func() bool { _, ok := ba.ClientStatsIn("t1", "sub"); return ok },
				"A holds the offline session")

			pub, _ := connectTenant(t, addrA, v, "t1", "pub", packet.Connect{CleanStart: true})
			for i := 0; i < 30; i++ {
				publish(t, pub, "q1/a", 1, false, fmt.Sprintf("a%d", i), uint16(2*i+1))
				publish(t, pub, "q2/b", 2, false, fmt.Sprintf("b%d", i), uint16(2*i+2))
			}
			// Queued on A (the log's deliveries are written to the
			// journal before they are queued); then A goes away without
			// handing anything over.
			mqtttest.Eventually(t, mqtttest.Timeout, func() bool {
				st, _ := ba.ClientStatsIn("t1", "sub")
				return st.Queued+st.Inflight == 60
			}, "A queued the 60 messages")
			na.halt()
			stopBroker(t, ba)

			re, ack := connectTenant(t, addrB, v, "t1", "sub", persistentConnect(v))
			if !ack.SessionPresent {
				t.Fatal("session not present on B [MQTT-3.2.2-2]")
			}
			var q1, q2 []string
			for _, p := range readPublishes(t, re, 60, nil) {
				if p.Topic == "q1/a" {
					q1 = append(q1, string(p.Payload))
				} else {
					q2 = append(q2, string(p.Payload))
				}
			}
			sameList(t, "q1", q1, want("a", 0, 30)) // [MQTT-4.6.0-6]
			sameList(t, "q2", q2, want("b", 0, 30))
			re.ExpectNone(200 * time.Millisecond)

			pub2, _ := connectTenant(t, addrB, v, "t1", "pub2", packet.Connect{CleanStart: true})
			publish(t, pub2, "q2/b", 2, false, "after", 1)
			sameList(t, "after adoption", payloadsOf(t, re, 1), []string{"after"})
			if _, ok := bb.ClientStatsIn("t1", "sub"); !ok {
				t.Fatal("B does not hold the adopted session")
			}
			if st := bb.Stats().Cluster; st.Adopted != 1 || st.CaughtUp != 0 {
				t.Fatalf("B's cluster stats %+v, want 1 adopted, 0 caught up (all 60 were in the journal)", st)
			}
		})
	}
}

// TestAdoptionCatchesUpFromTheLog: messages logged after the session's
// last journaled delivery, which its node never routed (its follower was
// behind when it died), reach the session on the node that adopts it.
func TestAdoptionCatchesUpFromTheLog(t *testing.T) {
	v := packet.V5
	cl := newLogCluster(t)
	o := broker.Options{Authenticator: tenantAuth{}}
	na, ba, addrA := cl.start(t, "A", o)
	_, bb, addrB := cl.start(t, "B", o)
	sub, _ := connectTenant(t, addrA, v, "t1", "sub", persistentConnect(v))
	subscribe(t, sub, 1, "c/#", 2)
	leave(sub)
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { _, ok := ba.ClientStatsIn("t1", "sub"); return ok },
		"A holds the offline session")
	pub, _ := connectTenant(t, addrB, v, "t1", "pub", packet.Connect{CleanStart: true})
	for i := 0; i < 10; i++ {
		publish(t, pub, "c/x", 2, false, fmt.Sprintf("m%d", i), uint16(i+1))
	}
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool {
		st, _ := ba.ClientStatsIn("t1", "sub")
		return st.Queued == 10
	}, "A queued the first 10")
	na.pause(true)
	for i := 10; i < 25; i++ {
		publish(t, pub, "c/x", 2, false, fmt.Sprintf("m%d", i), uint16(i+1))
	}
	na.halt()
	stopBroker(t, ba)

	re, ack := connectTenant(t, addrB, v, "t1", "sub", persistentConnect(v))
	if !ack.SessionPresent {
		t.Fatal("session not present on B")
	}
	sameList(t, "resumed", payloadsOf(t, re, 25), want("m", 0, 25))
	re.ExpectNone(200 * time.Millisecond)
	if st := bb.Stats().Cluster; st.Adopted != 1 || st.CaughtUp != 15 {
		t.Fatalf("B's cluster stats %+v, want 1 adopted, 15 caught up from the log", st)
	}
}

// TestLogFailureRefusesThePublish: when the cluster's log cannot store a
// QoS 1/2 message (no quorum), the publisher never gets a success: 5.0
// hears 0x80 in its PUBACK/PUBREC, a 3.1.1 connection is closed; the
// 3.1.1 client's QoS 2 resend after it reconnects is routed, not taken for
// a duplicate [MQTT-4.3.3-2].
func TestLogFailureRefusesThePublish(t *testing.T) {
	cl := newLogCluster(t)
	o := broker.Options{Authenticator: tenantAuth{}}
	_, b, addr := cl.start(t, "A", o)
	sub, _ := connectTenant(t, addr, packet.V5, "t1", "sub", persistentConnect(packet.V5))
	subscribe(t, sub, 1, "f/#", 2)
	cl.l.failWith(errNoQuorum)

	p5, _ := connectTenant(t, addr, packet.V5, "t1", "p5", packet.Connect{CleanStart: true})
	for _, q := range []byte{1, 2} {
		if code := publish5(t, p5, &packet.Publish{Topic: "f/5", QoS: q, PacketID: uint16(q), Payload: []byte("x")}); code != packet.UnspecifiedError {
			t.Fatalf("5.0 QoS %d publish without the log's quorum answered %v, want 0x80", q, code)
		}
	}
	p3, _ := connectTenant(t, addr, packet.V311, "t1", "p3", persistentConnect(packet.V311))
	p3.Send(&packet.Publish{Topic: "f/3", QoS: 2, PacketID: 7, Payload: []byte("y")})
	expectClosedSilently(t, p3)
	sub.ExpectNone(200 * time.Millisecond)

	cl.l.failWith(nil)
	p3, ack := connectTenant(t, addr, packet.V311, "t1", "p3", persistentConnect(packet.V311))
	if !ack.SessionPresent {
		t.Fatal("3.1.1 session not present")
	}
	p3.Send(&packet.Publish{Topic: "f/3", QoS: 2, PacketID: 7, Payload: []byte("y"), Dup: true})
	expect[*packet.Pubrec](t, p3)
	sameList(t, "the resend", payloadsOf(t, sub, 1), []string{"y"})
	if st := b.Stats().Cluster; st.LogRefused != 3 {
		t.Fatalf("LogRefused %d, want 3", st.LogRefused)
	}
}

// TestCleanStartDiscardsTheJournalsSession: a clean start on another node
// ends the session the journal holds: a later resume finds none.
func TestCleanStartDiscardsTheJournalsSession(t *testing.T) {
	v := packet.V5
	cl := newLogCluster(t)
	o := broker.Options{Authenticator: tenantAuth{}}
	_, _, addrA := cl.start(t, "A", o)
	_, _, addrB := cl.start(t, "B", o)
	key := broker.SessionKey("t1", "dev")
	c, _ := connectTenant(t, addrA, v, "t1", "dev", persistentConnect(v))
	subscribe(t, c, 1, "x/#", 1)
	leave(c)
	if !cl.j.has(t, key) {
		t.Fatal("the journal does not hold the persistent session")
	}
	p := persistentConnect(v)
	p.CleanStart = true
	c2, ack := connectTenant(t, addrB, v, "t1", "dev", p)
	if ack.SessionPresent {
		t.Fatal("clean start resumed a session [MQTT-3.1.2-4]")
	}
	leave(c2)
	c3, ack := connectTenant(t, addrA, v, "t1", "dev", persistentConnect(v))
	if !ack.SessionPresent {
		t.Fatal("the new persistent session is not present")
	}
	pub, _ := connectTenant(t, addrA, v, "t1", "pub", packet.Connect{CleanStart: true})
	publish(t, pub, "x/1", 1, false, "old-subscription", 1)
	c3.ExpectNone(300 * time.Millisecond) // the discarded session's subscription is gone
}

// TestAdoptionWhilePublishing: a session adopted while messages keep
// being published and logged gets every one once, in order, whether it
// came from the journal, the catch-up or the follower.
func TestAdoptionWhilePublishing(t *testing.T) {
	v := packet.V5
	cl := newLogCluster(t)
	o := broker.Options{Authenticator: tenantAuth{}}
	na, ba, addrA := cl.start(t, "A", o)
	_, _, addrB := cl.start(t, "B", o)
	sub, _ := connectTenant(t, addrA, v, "t1", "sub", persistentConnect(v))
	subscribe(t, sub, 1, "w/#", 1)
	leave(sub)
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { _, ok := ba.ClientStatsIn("t1", "sub"); return ok },
		"A holds the offline session")
	const n = 400
	done := make(chan struct{})
	go func() {
		defer close(done)
		pub, _ := connectTenant(t, addrB, v, "t1", "pub", packet.Connect{CleanStart: true})
		for i := 0; i < n; i++ {
			pub.Send(&packet.Publish{Topic: "w/1", QoS: 1, PacketID: uint16(i + 1), Payload: []byte(fmt.Sprintf("m%d", i))})
			if _, err := pub.Read(mqtttest.Timeout); err != nil {
				t.Errorf("publisher: %v", err)
				return
			}
			if i == n/4 {
				na.halt()
			}
		}
	}()
	// Resume on B while the publisher runs.
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return cl.l.stored() > n/2 }, "half the messages logged")
	stopBroker(t, ba)
	re, ack := connectTenant(t, addrB, v, "t1", "sub", persistentConnect(v))
	if !ack.SessionPresent {
		t.Fatal("session not present on B")
	}
	<-done
	sameList(t, "resumed while publishing", payloadsOf(t, re, n), want("m", 0, n))
	re.ExpectNone(200 * time.Millisecond)
}

// stopBroker shuts b down (a node gone; its test cleanup finds it stopped).
func stopBroker(t *testing.T, b *broker.Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// leave disconnects c normally and waits for the broker to close it.
func leave(c *mqtttest.Client) {
	c.Send(&packet.Disconnect{})
	c.ExpectClosed()
}

// TestLogStallHoldsLaterWrites: when the log stops answering a 3.1.1
// connection's write (its leader died), the connection writes nothing
// more once that write is older than the stall bound, and when it fails
// the connection is closed with nothing after it stored: the client's
// resend keeps its order [MQTT-4.6.0-1].
func TestLogStallHoldsLaterWrites(t *testing.T) {
	cl := newLogCluster(t)
	_, _, addr := cl.start(t, "A", broker.Options{Authenticator: tenantAuth{}})
	pub, _ := connectTenant(t, addr, packet.V311, "t1", "pub", packet.Connect{CleanStart: true})
	cl.l.hold()
	pub.Send(&packet.Publish{Topic: "s/1", QoS: 1, PacketID: 1, Payload: []byte("first")})
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return cl.l.logCalls() == 1 }, "the first write handed to the log")
	time.Sleep(300 * time.Millisecond) // past the stall bound
	pub.Send(&packet.Publish{Topic: "s/1", QoS: 1, PacketID: 2, Payload: []byte("second")})
	time.Sleep(200 * time.Millisecond)
	if n := cl.l.logCalls(); n != 1 {
		t.Fatalf("%d writes handed to the log while the first waited past the stall bound, want 1", n)
	}
	cl.l.answerHeld(errNoQuorum)
	expectClosedSilently(t, pub)
	if n := cl.l.logCalls(); n != 1 {
		t.Fatalf("%d writes handed to the log after the first failed, want 1", n)
	}
}

// TestAdoptionStartsAtTheSessionsCreation: a session adopted on another
// node is caught up from where the log stood when the session was made,
// never with what was published before it existed.
func TestAdoptionStartsAtTheSessionsCreation(t *testing.T) {
	v := packet.V5
	cl := newLogCluster(t)
	o := broker.Options{Authenticator: tenantAuth{}}
	na, ba, addrA := cl.start(t, "A", o)
	_, _, addrB := cl.start(t, "B", o)
	pub, _ := connectTenant(t, addrB, v, "t1", "pub", packet.Connect{CleanStart: true})
	for i := 0; i < 5; i++ {
		publish(t, pub, "o/x", 1, false, fmt.Sprintf("before%d", i), uint16(i+1))
	}
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return na.pos.Load() == 5 }, "A's follower routed the 5")
	sub, _ := connectTenant(t, addrA, v, "t1", "sub", persistentConnect(v))
	subscribe(t, sub, 1, "o/#", 1)
	leave(sub)
	na.halt()
	stopBroker(t, ba)
	publish(t, pub, "o/x", 1, false, "after", 6)
	re, ack := connectTenant(t, addrB, v, "t1", "sub", persistentConnect(v))
	if !ack.SessionPresent {
		t.Fatal("session not present on B")
	}
	sameList(t, "resumed", payloadsOf(t, re, 1), []string{"after"})
	re.ExpectNone(300 * time.Millisecond)
}

// TestQoS2IsLoggedAfterItsPacketIDIsJournaled: a persistent session's
// QoS 2 publish goes to the cluster's log only once the journal holds its
// packet id; when the journal refuses it, nothing is logged, so the
// client's resend is the only copy [MQTT-4.3.3-2].
func TestQoS2IsLoggedAfterItsPacketIDIsJournaled(t *testing.T) {
	cl := newLogCluster(t)
	_, _, addr := cl.start(t, "A", broker.Options{Authenticator: tenantAuth{}})
	pub, _ := connectTenant(t, addr, packet.V5, "t1", "pub", persistentConnect(packet.V5))
	cl.j.mu.Lock()
	cl.j.commit = errNoQuorum
	cl.j.mu.Unlock()
	if code := publish5(t, pub, &packet.Publish{Topic: "j/1", QoS: 2, PacketID: 9, Payload: []byte("x")}); code != packet.UnspecifiedError {
		t.Fatalf("QoS 2 publish the journal refused answered %v, want 0x80", code)
	}
	if n := cl.l.logCalls(); n != 0 {
		t.Fatalf("%d writes reached the log for a publish whose packet id the journal refused, want 0", n)
	}
	cl.j.mu.Lock()
	cl.j.commit = nil
	cl.j.mu.Unlock()
	if code := publish5(t, pub, &packet.Publish{Topic: "j/1", QoS: 2, PacketID: 9, Payload: []byte("x")}); code != packet.Success {
		t.Fatalf("the publish again answered %v", code)
	}
	if n := cl.l.logCalls(); n != 1 {
		t.Fatalf("%d writes reached the log, want 1", n)
	}
}

// TestAdoptionIsPerTenant: another tenant's client with the same client
// id resumes nothing of the session the journal holds: the journal is
// keyed by (tenant, client id), as sessions are.
func TestAdoptionIsPerTenant(t *testing.T) {
	v := packet.V5
	cl := newLogCluster(t)
	o := broker.Options{Authenticator: tenantAuth{}}
	na, ba, addrA := cl.start(t, "A", o)
	_, _, addrB := cl.start(t, "B", o)
	sub, _ := connectTenant(t, addrA, v, "t1", "dev", persistentConnect(v))
	subscribe(t, sub, 1, "p/#", 1)
	leave(sub)
	pub, _ := connectTenant(t, addrA, v, "t1", "pub", packet.Connect{CleanStart: true})
	publish(t, pub, "p/1", 1, false, "t1-secret", 1)
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { st, _ := ba.ClientStatsIn("t1", "dev"); return st.Queued == 1 }, "queued on A")
	na.halt()
	stopBroker(t, ba)

	other, ack := connectTenant(t, addrB, v, "t2", "dev", persistentConnect(v))
	if ack.SessionPresent {
		t.Fatal("t2's dev resumed t1's dev session")
	}
	other.ExpectNone(300 * time.Millisecond)
	if !cl.j.has(t, broker.SessionKey("t1", "dev")) {
		t.Fatal("t2's CONNECT touched t1's journaled session")
	}
	own, ack := connectTenant(t, addrB, v, "t1", "dev", persistentConnect(v))
	if !ack.SessionPresent {
		t.Fatal("t1's dev not resumed")
	}
	sameList(t, "t1's own", payloadsOf(t, own, 1), []string{"t1-secret"})
}

// TestCleanSessionsGetOtherNodesQoS1FromTheLog: a clean session's QoS 1/2
// deliveries published on another node come from the cluster's log (at
// least once, whatever the routes drop), its QoS 0 ones live; each once.
func TestCleanSessionsGetOtherNodesQoS1FromTheLog(t *testing.T) {
	v := packet.V5
	cl := newLogCluster(t)
	o := broker.Options{Authenticator: tenantAuth{}}
	na, _, addrA := cl.start(t, "A", o)
	_, _, addrB := cl.start(t, "B", o)
	clean, _ := connectTenant(t, addrA, v, "t1", "clean", packet.Connect{CleanStart: true})
	subscribe(t, clean, 1, "c/#", 1)
	waitWatching(t, na.fakeNode, "c/#", "")
	local, _ := connectTenant(t, addrB, v, "t1", "local", packet.Connect{CleanStart: true})
	subscribe(t, local, 1, "c/1", 1)
	pub, _ := connectTenant(t, addrB, v, "t1", "pub", packet.Connect{CleanStart: true})
	na.pause(true)
	publish(t, pub, "c/1", 1, false, "q1", 1)
	sameList(t, "the publisher's node", payloadsOf(t, local, 1), []string{"q1"}) // live
	local.ExpectNone(200 * time.Millisecond)                                     // not again from the log (here)
	publish(t, pub, "c/0", 0, false, "q0", 0)
	sameList(t, "while A's follower is paused", payloadsOf(t, clean, 1), []string{"q0"}) // QoS 0: live
	clean.ExpectNone(200 * time.Millisecond)
	na.pause(false)
	sameList(t, "from the log", payloadsOf(t, clean, 1), []string{"q1"})
	clean.ExpectNone(200 * time.Millisecond) // once
}

// TestBrokersOwnPublishIsLoggedOnceTheLogIsBack: a will (a publish of the
// broker's own, nobody to send it again) that the log refuses while it has
// no quorum is written again until it is stored, and then reaches a QoS 1
// subscriber on another node, which gets QoS 1/2 only from the log.
func TestBrokersOwnPublishIsLoggedOnceTheLogIsBack(t *testing.T) {
	v := packet.V5
	cl := newLogCluster(t)
	o := broker.Options{Authenticator: tenantAuth{}}
	_, ba, _ := cl.start(t, "A", o)
	nb, _, addrB := cl.start(t, "B", o)
	watcher, _ := connectTenant(t, addrB, v, "t1", "watcher", packet.Connect{CleanStart: true})
	subscribe(t, watcher, 1, "lwt/#", 1)
	waitWatching(t, nb.fakeNode, "lwt/#", "")
	cl.l.failWith(errNoQuorum)
	ba.SendOrphanWill(&broker.StoredSession{ClientID: broker.SessionKey("t1", "dev"), Version: v, ExpiryInterval: 300,
		Will:   &broker.StoredMessage{Topic: "lwt/dev", Payload: []byte("gone"), QoS: 1, Origin: broker.SessionKey("t1", "dev")},
		Holder: &broker.StoredHolder{Tenant: "t1", Username: "t1"}})
	watcher.ExpectNone(300 * time.Millisecond)
	cl.l.failWith(nil)
	sameList(t, "the will", payloadsOf(t, watcher, 1), []string{"gone"})
	watcher.ExpectNone(300 * time.Millisecond)
}

// TestQoS2ResendAfterANodesDeathIsStoredOnce: a persistent session's
// QoS 2 publish whose node died after the journal took its packet id, but
// before the client heard PUBREC, is sent again (DUP) on the node that
// adopts the session. Whether the log never stored the first write (the
// node died before it) or stored it (the answer was lost), the message
// reaches each subscriber exactly once [MQTT-4.3.3-2]: the resend is
// written under the first write's id, which the log stores once.
func TestQoS2ResendAfterANodesDeathIsStoredOnce(t *testing.T) {
	for _, stored := range []bool{false, true} {
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			t.Run(fmt.Sprintf("stored=%v/%s", stored, v), func(t *testing.T) {
				cl := newLogCluster(t)
				o := broker.Options{Authenticator: tenantAuth{}}
				na, ba, addrA := cl.start(t, "A", o)
				nb, _, addrB := cl.start(t, "B", o)
				psub, _ := connectTenant(t, addrB, v, "t1", "psub", persistentConnect(v))
				subscribe(t, psub, 1, "r/#", 2)
				csub, _ := connectTenant(t, addrB, v, "t1", "csub", packet.Connect{CleanStart: true})
				subscribe(t, csub, 1, "r/#", 2)
				waitWatching(t, nb.fakeNode, "r/#", "")

				pub, _ := connectTenant(t, addrA, v, "t1", "pub", persistentConnect(v))
				if stored {
					cl.l.holdAnswers() // stored; A never hears so
				} else {
					cl.l.hold() // A dies before the log stores it
				}
				p := &packet.Publish{Topic: "r/1", QoS: 2, PacketID: 7, Payload: []byte("once")}
				pub.Send(p)
				mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return cl.l.logCalls() == 1 },
					"the write handed to the log after the journal took the packet id")
				if stored {
					sameList(t, "persistent subscriber, first write", payloadsOf(t, psub, 1), []string{"once"})
					sameList(t, "clean subscriber, first write", payloadsOf(t, csub, 1), []string{"once"})
				}
				// A dies: the journal no longer hears from it (its release
				// of the packet id is lost), its write's answer never comes.
				cl.j.mu.Lock()
				cl.j.commit = errNoQuorum
				cl.j.mu.Unlock()
				na.halt()
				cl.l.answerHeld(errNoQuorum)
				pub.Conn.Close()
				stopBroker(t, ba)
				cl.j.mu.Lock()
				cl.j.commit = nil
				cl.j.mu.Unlock()

				re, ack := connectTenant(t, addrB, v, "t1", "pub", persistentConnect(v))
				if !ack.SessionPresent {
					t.Fatal("publisher's session not present on B")
				}
				p.Dup = true
				re.Send(p)
				if r := expect[*packet.Pubrec](t, re); r.PacketID != 7 || r.ReasonCode != packet.Success {
					t.Fatalf("PUBREC %d %v to the resend, want 7 success", r.PacketID, r.ReasonCode)
				}
				re.Send(&packet.Pubrel{PacketID: 7})
				if r := expect[*packet.Pubcomp](t, re); r.PacketID != 7 {
					t.Fatalf("PUBCOMP %d, want 7", r.PacketID)
				}
				if !stored {
					sameList(t, "persistent subscriber", payloadsOf(t, psub, 1), []string{"once"})
					sameList(t, "clean subscriber", payloadsOf(t, csub, 1), []string{"once"})
				}
				psub.ExpectNone(300 * time.Millisecond)
				csub.ExpectNone(100 * time.Millisecond)
				if n := cl.l.stored(); n != 1 {
					t.Fatalf("the log holds %d copies, want 1", n)
				}
			})
		}
	}
}

// TestQoS2NotLoggedAfterATakeover: a persistent session's QoS 2 publish
// whose packet id the old node's journal write takes only after another
// node took the session over (and read it without that id) is not
// written to the log by the old node: the new owner routes the client's
// resend as the message's only copy, stored and delivered once
// [MQTT-4.3.3-2].
func TestQoS2NotLoggedAfterATakeover(t *testing.T) {
	v := packet.V5
	cl := newLogCluster(t)
	o := broker.Options{Authenticator: tenantAuth{}}
	_, ga, _, addrA := cl.startGated(t, "A", o)
	nb, _, addrB := cl.start(t, "B", o)
	sub, _ := connectTenant(t, addrB, v, "t1", "sub", persistentConnect(v))
	subscribe(t, sub, 1, "r/#", 2)
	waitWatching(t, nb.fakeNode, "r/#", "")

	pub, _ := connectTenant(t, addrA, v, "t1", "pub", persistentConnect(v))
	ga.hold()
	p := &packet.Publish{Topic: "r/1", QoS: 2, PacketID: 7, Payload: []byte("once")}
	pub.Send(p)
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return ga.held() == 1 }, "A's commit of the packet id waiting")
	// B takes the session over while A's commit waits: A's connection
	// cannot finish within the takeover's wait, and B reads the session
	// without packet id 7.
	var re *mqtttest.Client
	for attempt := 0; re == nil; attempt++ {
		c := mqtttest.Dial(t, addrB, v)
		cp := persistentConnect(v)
		cp.ClientID, cp.Username, cp.UsernameFlag, cp.KeepAlive = "pub", "t1", true, 60
		c.Send(&cp)
		// The first claim waits for A's connection longer than a CONNECT
		// waits for its claim (0x88, as a cluster answers); the client
		// connects again.
		pk, err := c.Read(20 * time.Second)
		ack, ok := pk.(*packet.Connack)
		switch {
		case err != nil || !ok:
			t.Fatalf("CONNECT on B: %v %v", pk, err)
		case ack.ReasonCode == packet.Success && ack.SessionPresent:
			re = c
		case ack.ReasonCode == packet.ServerUnavailable && attempt < 3:
			c.ExpectClosed()
		default:
			t.Fatalf("CONNECT on B: %+v, want the session present", ack)
		}
	}
	ga.open() // A's commit lands now, after B read the session
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return ga.held() == 0 }, "A's commit done")
	p.Dup = true
	if code := publish5(t, re, p); code != packet.Success {
		t.Fatalf("the resend on B answered %v", code)
	}
	sameList(t, "subscriber", payloadsOf(t, sub, 1), []string{"once"})
	sub.ExpectNone(500 * time.Millisecond)
	if n := cl.l.stored(); n != 1 {
		t.Fatalf("the log holds %d copies, want 1", n)
	}
}

// TestQoS2FailedWriteKeepsItsIDFor3x: a 3.1.1 persistent session's QoS 2
// publish whose log write was reported failed although the log stored it
// (an acknowledgement that timed out across an election) closes the
// connection, and the packet id stays on record with its write id: the
// client's resend (DUP) on its next connection is written again under it
// and the message is stored and delivered once [MQTT-4.3.3-2].
func TestQoS2FailedWriteKeepsItsIDFor3x(t *testing.T) {
	v := packet.V311
	cl := newLogCluster(t)
	o := broker.Options{Authenticator: tenantAuth{}}
	_, _, addrA := cl.start(t, "A", o)
	nb, _, addrB := cl.start(t, "B", o)
	sub, _ := connectTenant(t, addrB, v, "t1", "sub", persistentConnect(v))
	subscribe(t, sub, 1, "f/#", 2)
	waitWatching(t, nb.fakeNode, "f/#", "")

	pub, _ := connectTenant(t, addrA, v, "t1", "pub", persistentConnect(v))
	cl.l.holdAnswers()
	p := &packet.Publish{Topic: "f/1", QoS: 2, PacketID: 3, Payload: []byte("once")}
	pub.Send(p)
	sameList(t, "subscriber, first write", payloadsOf(t, sub, 1), []string{"once"})
	cl.l.answerHeld(errNoQuorum) // stored, but reported failed
	expectClosedSilently(t, pub)

	re, ack := connectTenant(t, addrA, v, "t1", "pub", persistentConnect(v))
	if !ack.SessionPresent {
		t.Fatal("session not present")
	}
	p.Dup = true
	re.Send(p)
	if r := expect[*packet.Pubrec](t, re); r.PacketID != 3 {
		t.Fatalf("PUBREC %d, want 3", r.PacketID)
	}
	re.Send(&packet.Pubrel{PacketID: 3})
	expect[*packet.Pubcomp](t, re)
	sub.ExpectNone(300 * time.Millisecond)
	if n := cl.l.stored(); n != 1 {
		t.Fatalf("the log holds %d copies, want 1", n)
	}
}
