package broker_test

// Conformance: MQTT 3.1.1 sections 3.1.2.4 (clean session), 3.1.4
// (takeover), 4.1 (session state), 4.4 (message delivery retry) and the
// broker's Shutdown.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// dropConn closes c's network connection without DISCONNECT and waits
// until the broker has detached the session of id.
func dropConn(t *testing.T, b *broker.Broker, c *mqtttest.Client, id string) {
	t.Helper()
	if err := c.Conn.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitOffline(t, b, id)
}

func waitOffline(t *testing.T, b *broker.Broker, id string) {
	t.Helper()
	mqtttest.Eventually(t, 5*time.Second, func() bool {
		st, ok := b.ClientStats(id)
		return !ok || !st.Online
	}, "session of "+id+" offline")
}

// reconnect connects id with clean session 0 and checks session present.
func reconnect(t *testing.T, addr, id string, present bool) *mqtttest.Client {
	t.Helper()
	c, ack := mqtttest.Connect(t, addr, packet.V311, id, false)
	if ack.SessionPresent != present {
		t.Fatalf("session present %v, want %v [MQTT-3.2.2-2]", ack.SessionPresent, present)
	}
	return c
}

func TestSessionPersistentQueuesQoS1AndQoS2NotQoS0WhileOffline(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	sub := connect(t, addr, "offline", false)
	subscribe(t, sub, 1, "off/#", 2)
	disconnect(t, b, sub, "offline")

	pub := connect(t, addr, "offline-pub", true)
	publish(t, pub, "off/1", 1, false, "q1", 1)
	publish(t, pub, "off/0", 0, false, "q0", 0)
	publish(t, pub, "off/2", 2, false, "q2", 2)
	publish(t, pub, "off/1", 1, false, "q1b", 3)

	// The session keeps its subscriptions and the QoS 1 and 2 messages that
	// arrived while offline [MQTT-3.1.2-4] [MQTT-3.1.2-5]; QoS 0 ones are
	// not kept by default. CONNACK comes first [MQTT-3.2.0-1].
	sub = reconnect(t, addr, "offline", true)
	got := readPublishes(t, sub, 3, nil)
	want := []struct {
		topic, payload string
		qos            byte
	}{{"off/1", "q1", 1}, {"off/2", "q2", 2}, {"off/1", "q1b", 1}}
	for i, w := range want {
		if p := got[i]; p.Topic != w.topic || string(p.Payload) != w.payload || p.QoS != w.qos {
			t.Fatalf("message %d: %s %q QoS %d, want %s %q QoS %d", i, p.Topic, p.Payload, p.QoS, w.topic, w.payload, w.qos)
		}
	}
	sub.ExpectNone(quiet)

	// The subscription is still in force while online.
	publish(t, pub, "off/0", 0, false, "live", 0)
	receive(t, sub, "off/0", "live", 0)
}

func TestSessionQoS0QueuedOfflineWhenConfigured(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{QueueQoS0Offline: true})
	sub := connect(t, addr, "q0off", false)
	subscribe(t, sub, 1, "q0off", 0)
	disconnect(t, b, sub, "q0off")
	pub := connect(t, addr, "q0off-pub", true)
	publish(t, pub, "q0off", 0, false, "kept", 0)
	publish(t, pub, "q0off", 1, true, "barrier", 1) // processed in order after the QoS 0 one
	sub = reconnect(t, addr, "q0off", true)
	receive(t, sub, "q0off", "kept", 0)
	receive(t, sub, "q0off", "barrier", 0)
}

func TestSessionCleanStartDiscardsStoredSession(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	sub := connect(t, addr, "discard", false)
	subscribe(t, sub, 1, "disc/t", 1)
	disconnect(t, b, sub, "discard")
	pub := connect(t, addr, "discard-pub", true)
	publish(t, pub, "disc/t", 1, false, "queued", 1)

	// Clean session 1 discards the stored session: no queued messages, no
	// subscriptions [MQTT-3.1.2-6].
	c, ack := mqtttest.Connect(t, addr, packet.V311, "discard", true)
	if ack.SessionPresent {
		t.Fatalf("session present with clean session [MQTT-3.2.2-1]")
	}
	publish(t, pub, "disc/t", 1, false, "live", 2)
	c.ExpectNone(quiet)

	// And the clean session itself ends with the connection [MQTT-3.1.2-6].
	subscribe(t, c, 1, "disc/t", 1)
	disconnect(t, b, c, "discard")
	publish(t, pub, "disc/t", 1, false, "after", 3)
	c = reconnect(t, addr, "discard", false)
	c.ExpectNone(quiet)
}

func TestSessionUnackedQoS1RedeliveredWithDupOnReconnect(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	sub := connect(t, addr, "redeliver1", false)
	subscribe(t, sub, 1, "rd1/#", 1)
	pub := connect(t, addr, "redeliver1-pub", true)
	for i := range 3 {
		publish(t, pub, fmt.Sprintf("rd1/%d", i), 1, false, fmt.Sprint(i), uint16(i+1))
	}
	var first []*packet.Publish
	for range 3 {
		first = append(first, sub.ExpectPublish())
	}
	sub.Send(&packet.Puback{PacketID: first[1].PacketID}) // only the middle one is acknowledged
	sub.Send(&packet.Pingreq{})                           // PINGRESP proves the PUBACK was handled
	expect[*packet.Pingresp](t, sub)
	dropConn(t, b, sub, "redeliver1")
	publish(t, pub, "rd1/3", 1, false, "3", 4) // queued while offline

	// On reconnect the unacknowledged PUBLISH packets are resent with DUP 1
	// and their original packet ids [MQTT-4.4.0-1] [MQTT-3.3.1-1], in their
	// original order, before new messages [MQTT-4.6.0-1].
	sub = reconnect(t, addr, "redeliver1", true)
	for _, want := range []*packet.Publish{first[0], first[2]} {
		p := sub.ExpectPublish()
		if !p.Dup || p.PacketID != want.PacketID || p.Topic != want.Topic || string(p.Payload) != string(want.Payload) || p.QoS != 1 {
			t.Fatalf("redelivered %+v, want %s id %d with DUP [MQTT-4.4.0-1]", p, want.Topic, want.PacketID)
		}
		sub.Send(&packet.Puback{PacketID: p.PacketID})
	}
	if p := receive(t, sub, "rd1/3", "3", 1); p.Dup {
		t.Fatalf("a first delivery has DUP set")
	}
	sub.Send(&packet.Pingreq{})
	expect[*packet.Pingresp](t, sub)
	dropConn(t, b, sub, "redeliver1")

	// Everything was acknowledged: nothing is sent again.
	sub = reconnect(t, addr, "redeliver1", true)
	sub.ExpectNone(quiet)
}

func TestSessionUnackedQoS2PublishRedeliveredWithDup(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	sub := connect(t, addr, "redeliver2", false)
	subscribe(t, sub, 1, "rd2", 2)
	pub := connect(t, addr, "redeliver2-pub", true)
	publish(t, pub, "rd2", 2, false, "two", 1)
	p := sub.ExpectPublish()
	dropConn(t, b, sub, "redeliver2") // no PUBREC sent

	sub = reconnect(t, addr, "redeliver2", true)
	r := sub.ExpectPublish()
	if !r.Dup || r.PacketID != p.PacketID || r.QoS != 2 || string(r.Payload) != "two" { // [MQTT-4.4.0-1]
		t.Fatalf("redelivered %+v, want DUP QoS 2 id %d", r, p.PacketID)
	}
	ackPublish(t, sub, r)
	sub.ExpectNone(quiet)
}

func TestSessionPubrelResentOnReconnect(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	sub := connect(t, addr, "pubrel", false)
	subscribe(t, sub, 1, "prl", 2)
	pub := connect(t, addr, "pubrel-pub", true)
	publish(t, pub, "prl", 2, false, "x", 1)
	p := sub.ExpectPublish()
	sub.Send(&packet.Pubrec{PacketID: p.PacketID})
	if r := expect[*packet.Pubrel](t, sub); r.PacketID != p.PacketID {
		t.Fatalf("PUBREL %d, want %d", r.PacketID, p.PacketID)
	}
	dropConn(t, b, sub, "pubrel") // no PUBCOMP sent

	// The PUBREC was received: the broker resends PUBREL, not the PUBLISH
	// [MQTT-4.4.0-1] [MQTT-4.3.3-1].
	sub = reconnect(t, addr, "pubrel", true)
	if r := expect[*packet.Pubrel](t, sub); r.PacketID != p.PacketID {
		t.Fatalf("resent PUBREL %d, want %d", r.PacketID, p.PacketID)
	}
	sub.Send(&packet.Pubcomp{PacketID: p.PacketID})
	sub.ExpectNone(quiet)
	sub.Send(&packet.Pingreq{})
	expect[*packet.Pingresp](t, sub)
	dropConn(t, b, sub, "pubrel")
	sub = reconnect(t, addr, "pubrel", true)
	sub.ExpectNone(quiet)
}

func TestSessionInboundQoS2StateSurvivesReconnect(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	sub := connect(t, addr, "in2-sub", true)
	subscribe(t, sub, 1, "in2", 2)
	pub := connect(t, addr, "in2-pub", false)
	pub.Send(&packet.Publish{Topic: "in2", QoS: 2, PacketID: 11, Payload: []byte("once")})
	expect[*packet.Pubrec](t, pub)
	dropConn(t, b, pub, "in2-pub") // before PUBREL

	// The client resends the PUBLISH with DUP [MQTT-4.4.0-1]; the broker
	// still holds the packet id and must not deliver again [MQTT-4.3.3-2].
	pub = reconnect(t, addr, "in2-pub", true)
	pub.Send(&packet.Publish{Topic: "in2", QoS: 2, PacketID: 11, Dup: true, Payload: []byte("once")})
	if r := expect[*packet.Pubrec](t, pub); r.PacketID != 11 {
		t.Fatalf("PUBREC %d, want 11", r.PacketID)
	}
	pub.Send(&packet.Pubrel{PacketID: 11})
	if c := expect[*packet.Pubcomp](t, pub); c.PacketID != 11 {
		t.Fatalf("PUBCOMP %d, want 11", c.PacketID)
	}
	receive(t, sub, "in2", "once", 2)
	sub.ExpectNone(quiet)
}

func TestSessionTakeover(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		clean      bool
		present    bool
		subscribed bool
	}{
		{"persistent session carries over", false, true, true},
		{"clean session starts afresh", true, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := startBroker(t)
			old := connect(t, addr, "dup-id", false)
			subscribe(t, old, 1, "to/t", 1)

			c, ack := mqtttest.Connect(t, addr, packet.V311, "dup-id", tc.clean)
			// The broker disconnects the existing client [MQTT-3.1.4-2]; 3.1.1 has no
			// DISCONNECT from the server.
			expectClosedSilently(t, old)
			if ack.SessionPresent != tc.present {
				t.Fatalf("session present %v, want %v", ack.SessionPresent, tc.present)
			}
			pub := connect(t, addr, "to-pub", true)
			publish(t, pub, "to/t", 1, false, "m", 1)
			if tc.subscribed {
				receive(t, c, "to/t", "m", 1)
			} else {
				c.ExpectNone(quiet)
			}
			// The new connection works normally.
			subscribe(t, c, 2, "to/u", 0)
			publish(t, pub, "to/u", 0, false, "u", 0)
			receive(t, c, "to/u", "u", 0)
		})
	}
}

func TestSessionTakeoverMovesInflightToNewConnection(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	old := connect(t, addr, "move", false)
	subscribe(t, old, 1, "mv", 1)
	pub := connect(t, addr, "move-pub", true)
	publish(t, pub, "mv", 1, false, "inflight", 1)
	p := old.ExpectPublish() // not acknowledged

	c := reconnect(t, addr, "move", true)
	expectClosedSilently(t, old) // [MQTT-3.1.4-2]
	r := c.ExpectPublish()
	if !r.Dup || r.PacketID != p.PacketID || string(r.Payload) != "inflight" { // [MQTT-4.4.0-1]
		t.Fatalf("after takeover got %+v, want DUP id %d", r, p.PacketID)
	}
	c.Send(&packet.Puback{PacketID: r.PacketID})
	c.ExpectNone(quiet)
}

func TestSessionTakeoverRepeated(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	var prev *mqtttest.Client
	for i := range 5 {
		c, _ := mqtttest.Connect(t, addr, packet.V311, "flap", false)
		if prev != nil {
			expectClosedSilently(t, prev) // [MQTT-3.1.4-2]
		}
		prev = c
		if i == 0 {
			subscribe(t, c, 1, "flap", 1)
		}
	}
	if n := b.Stats().Clients; n != 1 {
		t.Fatalf("%d clients online, want 1", n)
	}
	pub := connect(t, addr, "flap-pub", true)
	publish(t, pub, "flap", 1, false, "last", 1)
	receive(t, prev, "flap", "last", 1)
}

func TestShutdownClosesClients(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	var clients []*mqtttest.Client
	for i := range 3 {
		c := connect(t, addr, fmt.Sprintf("shut-%d", i), i%2 == 0)
		subscribe(t, c, 1, "shut/#", 1)
		clients = append(clients, c)
	}
	idle := mqtttest.Dial(t, addr, packet.V311) // not yet connected
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, c := range clients {
		expectClosedSilently(t, c) // 3.1.1 clients get no DISCONNECT
	}
	idle.ExpectClosed()
}

func TestSessionRefusedConnectDoesNotTakeOver(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	owner := connect(t, addr, "owned", false)
	subscribe(t, owner, 1, "owned/t", 1)
	// A CONNECT for the same id that is refused (unsupported level) or
	// malformed must not disconnect the connected client: takeover happens
	// only for an accepted connection [MQTT-3.1.4-2] (DESIGN.md: after it
	// authenticates).
	bad := mqtttest.Dial(t, addr, packet.V311)
	bad.SendRaw(rawConnect("MQTT", 9, 0x00, 60, "owned"))
	expectRefused(t, bad, 1)
	bad = mqtttest.Dial(t, addr, packet.V311)
	bad.SendRaw(rawConnect("MQTT", 4, 0x01, 60, "owned"))
	expectClosedSilently(t, bad)

	pub := connect(t, addr, "owned-pub", true)
	publish(t, pub, "owned/t", 1, false, "still mine", 1)
	receive(t, owner, "owned/t", "still mine", 1)
}

func TestSessionSubscriptionsAndUnsubscribePersist(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	c := connect(t, addr, "subs-persist", false)
	c.Subscribe(1, packet.Subscription{Filter: "sp/keep", QoS: 1}, packet.Subscription{Filter: "sp/drop", QoS: 2})
	c.Send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"sp/drop"}})
	expect[*packet.Unsuback](t, c)
	disconnect(t, b, c, "subs-persist")

	pub := connect(t, addr, "subs-persist-pub", true)
	publish(t, pub, "sp/drop", 2, false, "no", 1)
	publish(t, pub, "sp/keep", 2, false, "yes", 2)
	// The stored session keeps the subscription with its granted QoS, and
	// not the removed one [MQTT-3.1.2-4].
	c = reconnect(t, addr, "subs-persist", true)
	receive(t, c, "sp/keep", "yes", 1)
	c.ExpectNone(quiet)
}

func TestSessionRetainedPublishedWhileOfflineIsLiveDelivery(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	c := connect(t, addr, "ret-offline", false)
	subscribe(t, c, 1, "ro/t", 1)
	disconnect(t, b, c, "ret-offline")
	pub := connect(t, addr, "ret-offline-pub", true)
	publish(t, pub, "ro/t", 1, true, "r", 1)
	// The message matched an established subscription: it is queued once and
	// sent with RETAIN 0 [MQTT-3.3.1-9]; no new subscription, so the
	// retained copy is not sent as well.
	c = reconnect(t, addr, "ret-offline", true)
	if p := receive(t, c, "ro/t", "r", 1); p.Retain {
		t.Fatalf("queued delivery has the retain flag set [MQTT-3.3.1-9]")
	}
	c.ExpectNone(quiet)
}

func TestSessionWillAndPersistentSessionTogether(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	watcher := connect(t, addr, "watcher", true)
	subscribe(t, watcher, 1, "wp/will", 1)
	c := mqtttest.Dial(t, addr, packet.V311)
	c.Connect(&packet.Connect{ClientID: "will-persist", KeepAlive: 60, Will: &packet.Will{Topic: "wp/will", Payload: []byte("lost"), QoS: 1}})
	subscribe(t, c, 1, "wp/data", 1)
	dropConn(t, b, c, "will-persist")
	receive(t, watcher, "wp/will", "lost", 1) // [MQTT-3.1.2-8]
	pub := connect(t, addr, "wp-pub", true)
	publish(t, pub, "wp/data", 1, false, "kept", 1)
	c = reconnect(t, addr, "will-persist", true) // the session outlives the will
	receive(t, c, "wp/data", "kept", 1)
}

// stuckSubscriber connects id, subscribes to topic at QoS 0 and never reads,
// then floods topic until the broker cannot write to it any more.
func stuckSubscriber(t *testing.T, b *broker.Broker, addr, id, topic string, clean bool) *mqtttest.Client {
	t.Helper()
	stuck := connect(t, addr, id, clean)
	subscribe(t, stuck, 1, topic, 0)
	pub := connect(t, addr, id+"-flood", true)
	for i := 0; ; i++ {
		if i > 3000 {
			t.Fatalf("client %s never backed up", id)
		}
		publish(t, pub, topic, 1, false, string(make([]byte, 64<<10)), uint16(i%65535+1))
		if st, _ := b.ClientStats(id); i > 50 && st.Queued > 20 {
			return stuck
		}
	}
}

func TestSessionTakeoverOfStuckConnection(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	stuck := stuckSubscriber(t, b, addr, "wedged", "wedged/t", false)
	start := time.Now()
	// The new connection is accepted even though the old one's writer is
	// blocked on a full socket [MQTT-3.1.4-2].
	c, ack := mqtttest.Connect(t, addr, packet.V311, "wedged", true)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("takeover of a stuck connection took %v", d)
	}
	if ack.SessionPresent {
		t.Fatalf("session present with clean session")
	}
	if err := stuck.Conn.Close(); err != nil {
		t.Fatal(err)
	}
	c.Send(&packet.Pingreq{})
	expect[*packet.Pingresp](t, c)
}

func TestShutdownWithStuckClient(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	stuckSubscriber(t, b, addr, "stuck-at-shutdown", "sas/t", true)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a client that does not read: %v after %v", err, time.Since(start))
	}
}
