package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// restartable runs brokers one after the other on the same store, as a
// broker process restarted on its data directory would.
type restartable struct {
	t  *testing.T
	st *memstore.Store
	b  *broker.Broker
	o  broker.Options
}

func newRestartable(t *testing.T, o broker.Options) (*restartable, string) {
	r := &restartable{t: t, st: memstore.New(), o: o}
	r.o.Store = r.st
	var addr string
	r.b, addr = mqtttest.StartBroker(t, r.o)
	return r, addr
}

// restart shuts the running broker down and starts a new one on a reopened
// store; it returns the new address.
func (r *restartable) restart() string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.b.Shutdown(ctx); err != nil {
		r.t.Fatal(err)
	}
	r.st = r.st.Reopen()
	r.o.Store = r.st
	var addr string
	r.b, addr = mqtttest.StartBroker(r.t, r.o)
	return addr
}

func TestRestartKeepsPersistentSessionsQueuesAndRetained(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			r, addr := newRestartable(t, broker.Options{})
			sub := mqtttest.Dial(t, addr, v)
			c := &packet.Connect{ClientID: "keeper", CleanStart: v == packet.V5, KeepAlive: 60}
			if v == packet.V5 {
				c.Properties.SessionExpiryInterval = broker.NoExpiry
				c.Properties.Set(packet.PropSessionExpiryInterval)
			}
			sub.Connect(c)
			sub.Subscribe(1, packet.Subscription{Filter: "keep/#", QoS: 1})
			sub.Send(&packet.Disconnect{})
			sub.ExpectClosed()

			pub, _ := mqtttest.Connect(t, addr, v, "pub", true)
			for i := range 5 {
				pub.Send(&packet.Publish{Topic: "keep/a", QoS: 1, PacketID: uint16(i + 1), Payload: fmt.Appendf(nil, "m%d", i)})
				if _, ok := pub.Expect().(*packet.Puback); !ok {
					t.Fatal("want PUBACK")
				}
			}
			pub.Send(&packet.Publish{Topic: "keep/retained", QoS: 1, PacketID: 9, Retain: true, Payload: []byte("kept")})
			pub.Expect()

			addr = r.restart()
			sub = mqtttest.Dial(t, addr, v)
			c.CleanStart = false
			if ack := sub.Connect(c); !ack.SessionPresent {
				t.Fatal("session not present after restart")
			}
			for i := range 5 { // in order, none lost [MQTT-4.6.0-2]
				p := sub.ExpectPublish()
				if string(p.Payload) != fmt.Sprintf("m%d", i) {
					t.Fatalf("message %d is %q", i, p.Payload)
				}
				sub.Send(&packet.Puback{PacketID: p.PacketID})
			}
			// The retained message, published while the session was
			// offline, was queued too (as a live message, retain flag off).
			if p := sub.ExpectPublish(); string(p.Payload) != "kept" || p.Retain {
				t.Fatalf("queued retained publish: %+v", p)
			}
			late, _ := mqtttest.Connect(t, addr, v, "late", true)
			late.Subscribe(1, packet.Subscription{Filter: "keep/retained", QoS: 1})
			if p := late.ExpectPublish(); string(p.Payload) != "kept" || !p.Retain {
				t.Fatalf("retained after restart: %+v", p)
			}
		})
	}
}

func TestRestartResendsInflightWithDupAndSamePacketID(t *testing.T) {
	r, addr := newRestartable(t, broker.Options{})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "inflight", false)
	sub.Subscribe(1, packet.Subscription{Filter: "f", QoS: 2})
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "pub", true)
	pub.Send(&packet.Publish{Topic: "f", QoS: 1, PacketID: 1, Payload: []byte("q1")})
	pub.Expect()
	pub.Send(&packet.Publish{Topic: "f", QoS: 2, PacketID: 2, Payload: []byte("q2")})
	pub.Expect() // PUBREC
	first := sub.ExpectPublish()
	second := sub.ExpectPublish()
	// Acknowledge the QoS 2 one halfway: PUBREC, so PUBREL is owed.
	sub.Send(&packet.Pubrec{PacketID: second.PacketID})
	if rel, ok := sub.Expect().(*packet.Pubrel); !ok || rel.PacketID != second.PacketID {
		t.Fatal("want PUBREL")
	}

	addr = r.restart()
	sub = mqtttest.Dial(t, addr, packet.V311)
	sub.Connect(&packet.Connect{ClientID: "inflight", KeepAlive: 60})
	// [MQTT-4.4.0-1]: the QoS 1 PUBLISH again with DUP and its packet id,
	// then PUBREL, never the QoS 2 PUBLISH again [MQTT-4.3.3-1].
	again := sub.ExpectPublish()
	if !again.Dup || again.PacketID != first.PacketID || string(again.Payload) != "q1" {
		t.Fatalf("resent %+v, want DUP q1 with packet id %d", again, first.PacketID)
	}
	if rel, ok := sub.Expect().(*packet.Pubrel); !ok || rel.PacketID != second.PacketID {
		t.Fatal("want PUBREL resent after restart")
	}
	sub.Send(&packet.Puback{PacketID: again.PacketID})
	sub.Send(&packet.Pubcomp{PacketID: second.PacketID})
	sub.ExpectNone(200 * time.Millisecond)

	// Both completed: a second restart resends nothing.
	addr = r.restart()
	sub = mqtttest.Dial(t, addr, packet.V311)
	sub.Connect(&packet.Connect{ClientID: "inflight", KeepAlive: 60})
	sub.ExpectNone(200 * time.Millisecond)
}

func TestRestartKeepsInboundQoS2State(t *testing.T) {
	r, addr := newRestartable(t, broker.Options{})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "watcher", false)
	sub.Subscribe(1, packet.Subscription{Filter: "once", QoS: 0})
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "qos2pub", false)
	pub.Send(&packet.Publish{Topic: "once", QoS: 2, PacketID: 7, Payload: []byte("x")})
	if rec, ok := pub.Expect().(*packet.Pubrec); !ok || rec.PacketID != 7 {
		t.Fatal("want PUBREC 7")
	}
	sub.ExpectPublish()

	addr = r.restart()
	sub = mqtttest.Dial(t, addr, packet.V311)
	sub.Connect(&packet.Connect{ClientID: "watcher", KeepAlive: 60})
	pub = mqtttest.Dial(t, addr, packet.V311)
	pub.Connect(&packet.Connect{ClientID: "qos2pub", KeepAlive: 60})
	// The publisher never saw PUBREC's effect... it resends: recognised, not
	// routed again [MQTT-4.3.3-2].
	pub.Send(&packet.Publish{Topic: "once", QoS: 2, PacketID: 7, Dup: true, Payload: []byte("x")})
	if rec, ok := pub.Expect().(*packet.Pubrec); !ok || rec.PacketID != 7 {
		t.Fatal("want PUBREC 7 again")
	}
	sub.ExpectNone(200 * time.Millisecond)
	pub.Send(&packet.Pubrel{PacketID: 7})
	if comp, ok := pub.Expect().(*packet.Pubcomp); !ok || comp.PacketID != 7 {
		t.Fatal("want PUBCOMP 7")
	}
}

// countingStore counts commits and can be made to fail.
type countingStore struct {
	broker.Store
	commits atomic.Int64
	fail    atomic.Bool
}

func (s *countingStore) Commit(b *broker.Batch, durable bool) error {
	if s.fail.Load() {
		return errors.New("disk full")
	}
	s.commits.Add(1)
	return s.Store.Commit(b, durable)
}

func TestCleanSessionsNeverTouchTheStore(t *testing.T) {
	st := &countingStore{Store: memstore.New()}
	_, addr := mqtttest.StartBroker(t, broker.Options{Store: st})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "clean-sub", true)
	sub.Subscribe(1, packet.Subscription{Filter: "c/#", QoS: 2})
	pub, _ := mqtttest.Connect(t, addr, packet.V5, "clean-pub", true)
	for q := byte(0); q < 3; q++ {
		pub.Send(&packet.Publish{Topic: "c/x", QoS: q, PacketID: uint16(q + 1), Payload: []byte("p")})
		if q > 0 {
			pub.Expect()
		}
		p := sub.ExpectPublish()
		switch p.QoS {
		case 1:
			sub.Send(&packet.Puback{PacketID: p.PacketID})
		case 2:
			sub.Send(&packet.Pubrec{PacketID: p.PacketID})
			sub.Expect()
			sub.Send(&packet.Pubcomp{PacketID: p.PacketID})
		}
	}
	pub.Send(&packet.Pubrel{PacketID: 3})
	pub.Expect()
	if n := st.commits.Load(); n != 0 {
		t.Fatalf("%d store commits for clean sessions only", n)
	}
}

func TestStoreFailureIsNeverAcknowledged(t *testing.T) {
	st := &countingStore{Store: memstore.New()}
	b, addr := mqtttest.StartBroker(t, broker.Options{Store: st})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "durable-sub", false)
	sub.Subscribe(1, packet.Subscription{Filter: "d", QoS: 1})
	st.fail.Store(true)

	p5, _ := mqtttest.Connect(t, addr, packet.V5, "pub5", true)
	p5.Send(&packet.Publish{Topic: "d", QoS: 1, PacketID: 1, Payload: []byte("x")})
	if ack, ok := p5.Expect().(*packet.Puback); !ok || ack.ReasonCode != packet.UnspecifiedError {
		t.Fatal("5.0 publisher: want PUBACK 0x80 when the store write fails")
	}
	p3, _ := mqtttest.Connect(t, addr, packet.V311, "pub3", true)
	p3.Send(&packet.Publish{Topic: "d", QoS: 1, PacketID: 1, Payload: []byte("x")})
	if got := p3.ExpectClosed(); len(got) != 0 {
		t.Fatalf("3.1.1 publisher got %v before the close; nothing may be acknowledged", got)
	}
	sub.ExpectNone(200 * time.Millisecond) // not delivered either
	if b.Stats().StoreErrors < 2 {
		t.Fatalf("store errors counted: %d", b.Stats().StoreErrors)
	}
}

func TestRestartedSessionExpires(t *testing.T) {
	r, addr := newRestartable(t, broker.Options{})
	c := mqtttest.Dial(t, addr, packet.V5)
	con := &packet.Connect{ClientID: "short", CleanStart: true, KeepAlive: 60}
	con.Properties.SessionExpiryInterval = 1
	con.Properties.Set(packet.PropSessionExpiryInterval)
	c.Connect(con)
	c.Subscribe(1, packet.Subscription{Filter: "s", QoS: 1})
	c.Send(&packet.Disconnect{})
	c.ExpectClosed()
	r.restart()
	if _, ok := r.b.ClientStats("short"); !ok {
		t.Fatal("session not restored")
	}
	mqtttest.Eventually(t, 5*time.Second, func() bool {
		_, ok := r.b.ClientStats("short")
		return !ok
	}, "the restored session to expire [MQTT-3.1.2-23]")
	st, err := broker.LoadAll(context.Background(), r.st)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sessions) != 0 {
		t.Fatalf("expired session still stored: %+v", st.Sessions[0])
	}
}

// crashSnapshot starts a broker on a copy of the store as it is now, as if
// the running broker had been killed: nothing was shut down gracefully.
func (r *restartable) crashSnapshot() string {
	r.t.Helper()
	r.st = r.st.Reopen()
	r.o.Store = r.st
	var addr string
	r.b, addr = mqtttest.StartBroker(r.t, r.o)
	return addr
}

func TestWillOfAClientConnectedAtACrashIsSentAfterRestart(t *testing.T) {
	r, addr := newRestartable(t, broker.Options{})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "watcher", false)
	sub.Subscribe(1, packet.Subscription{Filter: "status/#", QoS: 1})
	sub.Send(&packet.Disconnect{})
	sub.ExpectClosed()
	dev := mqtttest.Dial(t, addr, packet.V311)
	dev.Connect(&packet.Connect{ClientID: "dev", KeepAlive: 60,
		Will: &packet.Will{Topic: "status/dev", Payload: []byte("gone"), QoS: 1}})

	addr = r.crashSnapshot() // dev's connection ends with the crash, abnormally
	sub = mqtttest.Dial(t, addr, packet.V311)
	sub.Connect(&packet.Connect{ClientID: "watcher", KeepAlive: 60})
	p := sub.ExpectPublish()
	if p.Topic != "status/dev" || string(p.Payload) != "gone" {
		t.Fatalf("got %+v, want the will [MQTT-3.1.2-8]", p)
	}
	sub.Send(&packet.Puback{PacketID: p.PacketID})
	sub.Send(&packet.Disconnect{})
	sub.ExpectClosed()

	// Sent once: another restart does not send it again.
	addr = r.restart()
	sub = mqtttest.Dial(t, addr, packet.V311)
	sub.Connect(&packet.Connect{ClientID: "watcher", KeepAlive: 60})
	sub.ExpectNone(300 * time.Millisecond)
}

func TestNoWillAfterAGracefulShutdown(t *testing.T) {
	r, addr := newRestartable(t, broker.Options{})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "watcher", false)
	sub.Subscribe(1, packet.Subscription{Filter: "status/#", QoS: 1})
	sub.Send(&packet.Disconnect{})
	sub.ExpectClosed()
	dev := mqtttest.Dial(t, addr, packet.V311)
	dev.Connect(&packet.Connect{ClientID: "dev", KeepAlive: 60,
		Will: &packet.Will{Topic: "status/dev", Payload: []byte("gone"), QoS: 1}})
	addr = r.restart() // Shutdown: wills are not sent (DESIGN.md)
	sub = mqtttest.Dial(t, addr, packet.V311)
	sub.Connect(&packet.Connect{ClientID: "watcher", KeepAlive: 60})
	sub.ExpectNone(300 * time.Millisecond)
}

func TestDelayedWillSurvivesACrash(t *testing.T) {
	r, addr := newRestartable(t, broker.Options{})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "watcher", false)
	sub.Subscribe(1, packet.Subscription{Filter: "status/#", QoS: 1})
	dev := mqtttest.Dial(t, addr, packet.V5)
	c := &packet.Connect{ClientID: "dev5", CleanStart: true, KeepAlive: 60,
		Will: &packet.Will{Topic: "status/dev5", Payload: []byte("gone"), QoS: 1}}
	c.Properties.SessionExpiryInterval = 60
	c.Properties.Set(packet.PropSessionExpiryInterval)
	c.Will.Properties.WillDelayInterval = 1
	c.Will.Properties.Set(packet.PropWillDelayInterval)
	dev.Connect(c)
	dev.Conn.Close() // abnormal: the will waits out its delay
	mqtttest.Eventually(t, 5*time.Second, func() bool {
		cs, ok := r.b.ClientStats("dev5")
		return ok && !cs.Online
	}, "dev5 offline")
	start := time.Now()
	addr = r.crashSnapshot()
	sub = mqtttest.Dial(t, addr, packet.V311)
	sub.Connect(&packet.Connect{ClientID: "watcher", KeepAlive: 60})
	p := sub.ExpectPublish()
	if p.Topic != "status/dev5" {
		t.Fatalf("got %+v, want the delayed will", p)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Fatal("the restored will did not wait out its delay [MQTT-3.1.3-9]")
	}
}

// TestDurableAcksKeepPublishOrder: publishes that need a store write and
// publishes that need none (no persistent subscriber, refused) are
// acknowledged in the order they were sent [MQTT-4.6.0-2].
func TestDurableAcksKeepPublishOrder(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{Store: memstore.New()})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "durable", false)
	sub.Subscribe(1, packet.Subscription{Filter: "stored", QoS: 1})
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "orderly", true)
	const n = 300
	var buf []byte
	for i := range n {
		topic := "stored"
		switch i % 3 {
		case 1:
			topic = "nobody"
		case 2:
			topic = "$SYS/dropped"
		}
		buf, _ = (&packet.Publish{Topic: topic, QoS: 1, PacketID: uint16(i + 1), Payload: []byte("x")}).Append(buf, packet.V311)
	}
	pub.SendRaw(buf) // all at once: the reader runs ahead of the store
	for i := range n {
		ack, ok := pub.Expect().(*packet.Puback)
		if !ok || ack.PacketID != uint16(i+1) {
			t.Fatalf("ack %d: got %+v, want PUBACK %d", i, ack, i+1)
		}
	}
}

// TestLazyRemovalReachesTheStoreOnItsOwn: removing an acknowledged
// delivery is a lazy store operation; with no commit after it, its timer
// writes it within lazyInterval (100 ms), so a crash after that does not
// send the message again.
func TestLazyRemovalReachesTheStoreOnItsOwn(t *testing.T) {
	r, addr := newRestartable(t, broker.Options{})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "keeper", false)
	sub.Subscribe(1, packet.Subscription{Filter: "m/#", QoS: 1})
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "sender", true)
	pub.Send(&packet.Publish{Topic: "m/1", QoS: 1, PacketID: 1, Payload: []byte("once")})
	pub.Expect() // PUBACK: the delivery is in the store
	p := sub.ExpectPublish()
	sub.Send(&packet.Puback{PacketID: p.PacketID})
	time.Sleep(500 * time.Millisecond)

	addr = r.crashSnapshot()
	sub = mqtttest.Dial(t, addr, packet.V311)
	sub.Connect(&packet.Connect{ClientID: "keeper", KeepAlive: 60})
	sub.ExpectNone(300 * time.Millisecond)
}

// TestStaleInboundIDIsANewMessageWithoutDup: the store holds an inbound
// QoS 2 packet id whose PUBREL release it lost in a crash (released
// lazily), while the client, which had PUBCOMP, reuses the id. Its
// PUBLISH with DUP 0 is a new message [MQTT-3.3.1-1] [MQTT-2.3.1-3],
// routed; a PUBLISH with DUP 1 under an id on record is a resend,
// acknowledged and not routed [MQTT-4.3.3-2].
func TestStaleInboundIDIsANewMessageWithoutDup(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			st := memstore.New()
			rec := &broker.StoredSession{Version: v, ExpiryInterval: broker.NoExpiry}
			if err := st.Commit(&broker.Batch{Ops: []broker.Op{
				{Kind: broker.OpPutSession, ClientID: "pub", Session: rec},
				{Kind: broker.OpPutInbound, ClientID: "pub", PacketID: 5},
				{Kind: broker.OpPutInbound, ClientID: "pub", PacketID: 6},
			}}, true); err != nil {
				t.Fatal(err)
			}
			_, addr := mqtttest.StartBroker(t, broker.Options{Store: st})
			sub := connect(t, addr, "sub", true)
			subscribe(t, sub, 1, "reuse/#", 2)
			pub := mqtttest.Dial(t, addr, v)
			cp := persistentConnect(v)
			cp.ClientID, cp.KeepAlive = "pub", 60
			if ack := pub.Connect(&cp); !ack.SessionPresent {
				t.Fatal("stored session not present")
			}
			publish(t, pub, "reuse/a", 2, false, "new", 5) // DUP 0
			receive(t, sub, "reuse/a", "new", 2)
			pub.Send(&packet.Publish{Topic: "reuse/a", QoS: 2, PacketID: 6, Dup: true, Payload: []byte("resent")})
			if r := expect[*packet.Pubrec](t, pub); r.PacketID != 6 {
				t.Fatalf("PUBREC %d, want 6", r.PacketID)
			}
			sub.ExpectNone(300 * time.Millisecond)
		})
	}
}
