package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

func testEmpty(t *testing.T, h *harness) {
	equal(t, "empty store", h.load(), &broker.StoredState{})
	h.restart()
	equal(t, "empty store after restart", h.load(), &broker.StoredState{})
}

func testSessionPutUpdate(t *testing.T, h *harness) {
	h.commit(true, putSession("c5", packet.V5, 3600, t0), putSession("c3", packet.V311, broker.NoExpiry, t0))
	h.commit(true, putSession("c31", packet.V31, 0, t0))
	h.commit(true, putSub("c5", broker.StoredSubscription{Filter: "a/#", QoS: 1}),
		enqueue("c5", delivery(1, "a/b", "x")),
		broker.Op{Kind: broker.OpPutInbound, ClientID: "c5", PacketID: 9})
	h.restart()
	equal(t, "sessions", h.load().Sessions, []*broker.StoredSession{
		wantSession("c3", packet.V311, broker.NoExpiry, t0),
		wantSession("c31", packet.V31, 0, t0),
		{ClientID: "c5", Version: packet.V5, ExpiryInterval: 3600, DisconnectedAt: t0,
			Subscriptions: []broker.StoredSubscription{{Filter: "a/#", QoS: 1}},
			Queue:         []broker.StoredDelivery{delivery(1, "a/b", "x")},
			InboundQoS2:   []uint16{9}},
	})

	// Updating keeps the lists; a zero DisconnectedAt (online again) is kept as zero.
	h.commit(true, putSession("c5", packet.V5, 60, t1))
	h.commit(false, putSession("c3", packet.V311, broker.NoExpiry, t0), putSession("c31", packet.V31, 0, zeroTime))
	h.restart()
	equal(t, "updated c5", h.mustSession("c5"), &broker.StoredSession{
		ClientID: "c5", Version: packet.V5, ExpiryInterval: 60, DisconnectedAt: t1,
		Subscriptions: []broker.StoredSubscription{{Filter: "a/#", QoS: 1}},
		Queue:         []broker.StoredDelivery{delivery(1, "a/b", "x")},
		InboundQoS2:   []uint16{9},
	})
	equal(t, "updated c31", h.mustSession("c31"), wantSession("c31", packet.V31, 0, zeroTime))
}

func testSessionWill(t *testing.T, h *harness) {
	will := &broker.StoredMessage{Topic: "dev/1/status", Payload: []byte("offline"), QoS: 1, Retain: true, Properties: fullProperties()}
	holder := &broker.StoredHolder{Tenant: "A", Username: "dev-1", Roles: []string{"R1", "R2"}, Method: "password",
		Principal: "dev-1", Attrs: map[string]string{"auth.method": "password", "k": ""}}
	put := putSession("w", packet.V5, 600, t0)
	put.Session.Will, put.Session.WillDelay, put.Session.Holder = will, 30, holder
	h.commit(true, put, putSub("w", broker.StoredSubscription{Filter: "x", QoS: 1}))
	holder.Roles[0], holder.Attrs["k"] = "changed", "changed" // the store keeps its own copy
	h.restart()
	got := h.mustSession("w")
	want := wantSession("w", packet.V5, 600, t0)
	want.Will, want.WillDelay = will, 30
	want.Holder = &broker.StoredHolder{Tenant: "A", Username: "dev-1", Roles: []string{"R1", "R2"}, Method: "password",
		Principal: "dev-1", Attrs: map[string]string{"auth.method": "password", "k": ""}}
	want.Subscriptions = []broker.StoredSubscription{{Filter: "x", QoS: 1}}
	normMessage(want.Will)
	equal(t, "session with a will", got, want)

	// Updating without a will clears it and keeps the rest.
	h.commit(true, putSession("w", packet.V5, 600, t1))
	h.restart()
	want = wantSession("w", packet.V5, 600, t1)
	want.Subscriptions = []broker.StoredSubscription{{Filter: "x", QoS: 1}}
	equal(t, "will cleared", h.mustSession("w"), want)
}

func testSessionDelete(t *testing.T, h *harness) {
	for _, id := range []string{"gone", "kept"} {
		h.commit(true,
			putSession(id, packet.V5, 100, t0),
			putSub(id, broker.StoredSubscription{Filter: "x/+", QoS: 2}),
			putSub(id, broker.StoredSubscription{Filter: "y", QoS: 1}),
			enqueue(id, delivery(1, "x/1", "one")),
			enqueue(id, delivery(2, "x/2", "two")),
			setInflight(id, 1, 1, broker.AwaitPuback),
			broker.Op{Kind: broker.OpPutInbound, ClientID: id, PacketID: 3},
		)
	}
	keptBefore := h.mustSession("kept")
	h.commit(true, broker.Op{Kind: broker.OpDeleteSession, ClientID: "gone"})
	if s := h.session("gone"); s != nil {
		t.Fatalf("deleted session still loaded: %s", dump(s))
	}
	h.restart()
	if s := h.session("gone"); s != nil {
		t.Fatalf("deleted session back after restart: %s", dump(s))
	}
	equal(t, "other session", h.mustSession("kept"), keptBefore)

	// A new session under the same ClientID starts empty, and ops on it
	// do not resurrect the old one's records.
	h.commit(true, putSession("gone", packet.V311, broker.NoExpiry, zeroTime))
	equal(t, "new session", h.mustSession("gone"), wantSession("gone", packet.V311, broker.NoExpiry, zeroTime))
	h.commit(true, enqueue("gone", delivery(5, "z", "new")))
	h.restart()
	equal(t, "new session after restart", h.mustSession("gone"), &broker.StoredSession{
		ClientID: "gone", Version: packet.V311, ExpiryInterval: broker.NoExpiry,
		Queue: []broker.StoredDelivery{delivery(5, "z", "new")},
	})
	equal(t, "other session after restart", h.mustSession("kept"), keptBefore)
}

// testTenantKeys: session keys of one client id in several tenants
// (broker.SessionKey: tenant, NUL, client id) are sessions of their own,
// and so is the bare client id (tenant "", and records from before
// tenants); removing one leaves the others whole.
func testTenantKeys(t *testing.T, h *harness) {
	keys := []string{"meter-001", broker.SessionKey("A", "meter-001"), broker.SessionKey("B", "meter-001"), "A"}
	for i, k := range keys {
		tenant, _ := broker.SplitSessionKey(k)
		d := delivery(1, "common/feed", k)
		d.Share, d.ShareFilter = broker.SessionKey(tenant, "g"), "common/feed"
		h.commit(true,
			putSession(k, packet.V5, uint32(100+i), t0),
			putSub(k, broker.StoredSubscription{Filter: "$share/g/common/feed", QoS: 1}),
			enqueue(k, d),
		)
	}
	h.commit(true, broker.Op{Kind: broker.OpDeleteSession, ClientID: keys[1]})
	h.restart()
	if s := h.session(keys[1]); s != nil {
		t.Fatalf("deleted tenant session still loaded: %s", dump(s))
	}
	for i, k := range keys {
		if i == 1 {
			continue
		}
		tenant, _ := broker.SplitSessionKey(k)
		d := delivery(1, "common/feed", k)
		d.Share, d.ShareFilter = broker.SessionKey(tenant, "g"), "common/feed"
		want := wantSession(k, packet.V5, uint32(100+i), t0)
		want.Subscriptions = []broker.StoredSubscription{{Filter: "$share/g/common/feed", QoS: 1}}
		want.Queue = []broker.StoredDelivery{d}
		equal(t, fmt.Sprintf("session %q", k), h.mustSession(k), want)
	}
}

func testSubscriptions(t *testing.T, h *harness) {
	subs := []broker.StoredSubscription{
		{Filter: "$share/g1/sensors/+/temp", QoS: 1, SubID: 42},
		{Filter: "a/b", QoS: 0, NoLocal: true},
		{Filter: "a/#", QoS: 2, RetainAsPublished: true, RetainHandling: 2, SubID: 268435455},
		{Filter: "#", QoS: 1, RetainHandling: 1},
		{Filter: "ünïcode/✓", QoS: 2, NoLocal: true, RetainAsPublished: true},
	}
	ops := []broker.Op{putSession("c", packet.V5, 0, zeroTime)}
	for _, s := range subs {
		ops = append(ops, putSub("c", s))
	}
	h.commit(true, ops...)
	// Replace one, delete one, delete one that does not exist.
	h.commit(true,
		putSub("c", broker.StoredSubscription{Filter: "a/b", QoS: 2, RetainHandling: 1, SubID: 5}),
		broker.Op{Kind: broker.OpDeleteSubscription, ClientID: "c", Filter: "#"},
		broker.Op{Kind: broker.OpDeleteSubscription, ClientID: "c", Filter: "nope"},
	)
	h.restart()
	equal(t, "subscriptions by filter", h.mustSession("c").Subscriptions, []broker.StoredSubscription{
		{Filter: "$share/g1/sensors/+/temp", QoS: 1, SubID: 42},
		{Filter: "a/#", QoS: 2, RetainAsPublished: true, RetainHandling: 2, SubID: 268435455},
		{Filter: "a/b", QoS: 2, RetainHandling: 1, SubID: 5},
		{Filter: "ünïcode/✓", QoS: 2, NoLocal: true, RetainAsPublished: true},
	})
}

func testQueue(t *testing.T, h *harness) {
	d1 := delivery(1, "t/1", "one")
	d2 := broker.StoredDelivery{
		Seq: 2, QoS: 2, Retain: true, SubIDs: []uint32{1, 99},
		Share: "g", ShareFilter: "t/+",
		Msg: broker.StoredMessage{Topic: "t/2", Payload: []byte{0, 1, 2}, QoS: 2, Retain: true, Origin: ""},
	}
	d3 := broker.StoredDelivery{Seq: 3, QoS: 1, Msg: broker.StoredMessage{Topic: "t/3", QoS: 2, Expiry: t1}} // empty payload, downgraded
	d10 := delivery(10, "t/10", "ten")
	d300 := delivery(300, "t/300", "three hundred") // seq order is numeric, not textual
	h.commit(true, putSession("c", packet.V5, 0, zeroTime), enqueue("c", d10), enqueue("c", d300), enqueue("c", d2))
	h.commit(true, enqueue("c", d1), enqueue("c", d3), enqueue("c", delivery(4, "t/4", "four")))
	h.commit(false, dequeue("c", 4), dequeue("c", 999))
	want := []broker.StoredDelivery{d1, d2, d3, d10, d300}
	equal(t, "queue", h.mustSession("c").Queue, want)
	h.restart()
	equal(t, "queue after restart", h.mustSession("c").Queue, want)
	h.commit(true, dequeue("c", 1), dequeue("c", 300))
	h.restart()
	equal(t, "queue after dequeue", h.mustSession("c").Queue, []broker.StoredDelivery{d2, d3, d10})
}

func testInflight(t *testing.T, h *harness) {
	ops := []broker.Op{putSession("c", packet.V5, 0, zeroTime)}
	for seq := uint64(1); seq <= 5; seq++ {
		d := delivery(seq, fmt.Sprintf("t/%d", seq), "p")
		d.QoS, d.Msg.QoS = 2, 2
		ops = append(ops, enqueue("c", d))
	}
	h.commit(true, ops...)
	h.commit(true,
		setInflight("c", 1, 101, broker.AwaitPubrec),
		setInflight("c", 2, 102, broker.AwaitPubrec),
		setInflight("c", 3, 103, broker.AwaitPuback),
	)
	h.commit(true, setInflight("c", 1, 101, broker.AwaitPubcomp)) // PUBREC received
	h.commit(true, setInflight("c", 2, 102, broker.AwaitPubcomp), dequeue("c", 2))
	h.commit(true, setInflight("c", 3, 7, broker.AwaitPuback)) // resent under a new packet id
	h.restart()
	q := h.mustSession("c").Queue
	type st struct {
		Seq   uint64
		PID   uint16
		State broker.InflightState
	}
	var got []st
	for _, d := range q {
		got = append(got, st{d.Seq, d.PacketID, d.State})
	}
	equal(t, "inflight states", got, []st{
		{1, 101, broker.AwaitPubcomp},
		{3, 7, broker.AwaitPuback},
		{4, 0, broker.Queued},
		{5, 0, broker.Queued},
	})
	if q[1].Msg.Topic != "t/3" || string(q[1].Msg.Payload) != "p" {
		t.Fatalf("inflight delivery lost its message: %s", dump(q[1]))
	}
	// Completing the QoS 2 flow removes it.
	h.commit(false, dequeue("c", 1), dequeue("c", 3))
	h.restart()
	got = got[:0]
	for _, d := range h.mustSession("c").Queue {
		got = append(got, st{d.Seq, d.PacketID, d.State})
	}
	equal(t, "after completion", got, []st{{4, 0, broker.Queued}, {5, 0, broker.Queued}})
}

func testInbound(t *testing.T, h *harness) {
	in := func(kind broker.OpKind, pid uint16) broker.Op {
		return broker.Op{Kind: kind, ClientID: "c", PacketID: pid}
	}
	h.commit(true, putSession("c", packet.V5, 0, zeroTime),
		in(broker.OpPutInbound, 65535), in(broker.OpPutInbound, 5), in(broker.OpPutInbound, 1), in(broker.OpPutInbound, 256))
	h.commit(true, in(broker.OpPutInbound, 5)) // repeated PUBLISH: idempotent
	h.commit(false, in(broker.OpDeleteInbound, 256), in(broker.OpDeleteInbound, 77))
	h.restart()
	equal(t, "inbound ids", h.mustSession("c").InboundQoS2, []uint16{1, 5, 65535})
}

func testRetained(t *testing.T, h *harness) {
	a := broker.StoredMessage{Topic: "a", Payload: []byte("A1"), QoS: 1, Retain: true, Origin: "p1"}
	b := broker.StoredMessage{Topic: "b/c", Payload: []byte("B"), QoS: 0, Retain: true}
	sys := broker.StoredMessage{Topic: "$SYS/x", Payload: []byte("S"), QoS: 2, Retain: true, Expiry: t1}
	empty := broker.StoredMessage{Topic: "z", QoS: 0, Retain: true}
	h.commit(true, putRetained(a), putRetained(b), putRetained(sys), putRetained(empty))
	a2 := broker.StoredMessage{Topic: "a", Payload: []byte("A2"), QoS: 2, Retain: true, Origin: "p2", Properties: fullProperties()}
	h.commit(true, putRetained(a2), broker.Op{Kind: broker.OpDeleteRetained, Topic: "b/c"},
		broker.Op{Kind: broker.OpDeleteRetained, Topic: "never"})
	h.restart()
	got := h.load().Retained
	equal(t, "retained by topic", got, []*broker.StoredMessage{&sys, &a2, &empty})
}

func testProperties(t *testing.T, h *harness) {
	msg := broker.StoredMessage{
		Topic: "req/1", Payload: bytes.Repeat([]byte{0xAB}, 1000), QoS: 2, Retain: false,
		Properties: fullProperties(), Expiry: t1, Origin: "requester",
	}
	d := broker.StoredDelivery{Seq: 1, Msg: msg, QoS: 1, SubIDs: []uint32{7}}
	minimal := &packet.Properties{ContentType: "text/plain"}
	minimal.Set(packet.PropContentType)
	d2 := broker.StoredDelivery{Seq: 2, QoS: 0, Msg: broker.StoredMessage{Topic: "t", Properties: minimal}}
	d3 := broker.StoredDelivery{Seq: 3, QoS: 1, Msg: broker.StoredMessage{Topic: "u", Payload: []byte("x"), QoS: 1, Properties: &packet.Properties{}}}
	h.commit(true, putSession("c", packet.V5, 0, zeroTime), enqueue("c", d), enqueue("c", d2), enqueue("c", d3))
	h.commit(true, putRetained(broker.StoredMessage{Topic: "req/1", Payload: []byte("r"), QoS: 1, Retain: true, Properties: fullProperties(), Expiry: t0}))
	h.restart()
	st := h.load()
	d3.Msg.Properties = nil // empty properties are "none"
	d.Msg.Expiry, d2.Msg.Expiry = normTime(d.Msg.Expiry), normTime(d2.Msg.Expiry)
	equal(t, "queue properties", st.Sessions[0].Queue, []broker.StoredDelivery{d, d2, d3})
	equal(t, "retained properties", st.Retained, []*broker.StoredMessage{
		{Topic: "req/1", Payload: []byte("r"), QoS: 1, Retain: true, Properties: fullProperties(), Expiry: t0},
	})
	ups := st.Sessions[0].Queue[0].Msg.Properties.UserProperties
	if ups[1].Value != "1" || ups[2].Value != "2" {
		t.Fatalf("user property order lost: %v", ups)
	}
}

func testOrderWithinBatch(t *testing.T, h *harness) {
	// Ops apply in order: enqueue then dequeue leaves nothing; delete then
	// put starts a new, empty session.
	h.commit(true, putSession("c", packet.V5, 10, zeroTime), enqueue("c", delivery(1, "a", "1")), dequeue("c", 1),
		enqueue("c", delivery(2, "a", "2")))
	h.commit(true, putSub("c", broker.StoredSubscription{Filter: "f", QoS: 1}),
		broker.Op{Kind: broker.OpDeleteSession, ClientID: "c"},
		putSession("c", packet.V311, 20, t0),
		enqueue("c", delivery(7, "b", "7")),
		putRetained(broker.StoredMessage{Topic: "r", Payload: []byte("1"), Retain: true}),
		broker.Op{Kind: broker.OpDeleteRetained, Topic: "r"},
	)
	h.restart()
	st := h.load()
	equal(t, "state", st, &broker.StoredState{Sessions: []*broker.StoredSession{{
		ClientID: "c", Version: packet.V311, ExpiryInterval: 20, DisconnectedAt: t0,
		Queue: []broker.StoredDelivery{delivery(7, "b", "7")},
	}}})
}

func testUnknownSession(t *testing.T, h *harness) {
	// Ops on a ClientID without a session are ignored.
	h.commit(true,
		putSub("nobody", broker.StoredSubscription{Filter: "a", QoS: 1}),
		enqueue("nobody", delivery(1, "a", "x")),
		setInflight("nobody", 1, 1, broker.AwaitPuback),
		broker.Op{Kind: broker.OpPutInbound, ClientID: "nobody", PacketID: 1},
		broker.Op{Kind: broker.OpDeleteSession, ClientID: "nobody"},
	)
	h.commit(true, putSession("nobody", packet.V5, 0, zeroTime))
	h.restart()
	equal(t, "state", h.load(), &broker.StoredState{Sessions: []*broker.StoredSession{
		wantSession("nobody", packet.V5, 0, zeroTime),
	}})
}

func testAtomic(t *testing.T, h *harness) {
	h.commit(true, putSession("c", packet.V5, 0, zeroTime), enqueue("c", delivery(1, "a", "1")))
	before := h.load()
	bad := []broker.Batch{
		{Ops: []broker.Op{enqueue("c", delivery(2, "a", "2")), putRetained(broker.StoredMessage{Topic: "r"}), {Kind: 200}}},
		{Ops: []broker.Op{dequeue("c", 1), {Kind: broker.OpEnqueue, ClientID: "c"}}},
		{Ops: []broker.Op{putSession("d", packet.V5, 0, zeroTime), {Kind: broker.OpPutRetained}}},
		{Ops: []broker.Op{putRetained(broker.StoredMessage{Topic: "x"}), {Kind: broker.OpPutSession, ClientID: "e"}}},
		{Ops: []broker.Op{putRetained(broker.StoredMessage{Topic: "y"}), {Kind: broker.OpPutSubscription, ClientID: "c"}}},
		{Ops: []broker.Op{putRetained(broker.StoredMessage{Topic: "y"}), {Kind: broker.OpSetInflight, ClientID: "c"}}},
	}
	for i := range bad {
		if err := h.s.Commit(&bad[i], true); err == nil {
			t.Fatalf("batch %d with an invalid op: Commit succeeded", i)
		}
	}
	equal(t, "state after failed commits", h.load(), before)
	h.restart()
	equal(t, "state after failed commits and restart", h.load(), before)
	// The store still works, and the refused session "d" can be created.
	h.commit(true, putSession("d", packet.V5, 0, zeroTime), enqueue("d", delivery(1, "q", "1")))
	h.restart()
	if got := len(h.mustSession("d").Queue); got != 1 {
		t.Fatalf("session d has %d queued, want 1", got)
	}
}

func testCommitAfterClose(t *testing.T, h *harness) {
	h.commit(true, putSession("c", packet.V5, 0, zeroTime))
	if err := h.s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := h.s.Commit(new(broker.Batch).Add(enqueue("c", delivery(1, "a", "1"))), true); err == nil {
		t.Fatal("Commit after Close succeeded")
	}
	if err := h.s.Commit(new(broker.Batch).Add(putRetained(broker.StoredMessage{Topic: "r"})), false); err == nil {
		t.Fatal("non-durable Commit after Close succeeded")
	}
	if err := h.s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !h.f.Persistent {
		return
	}
	h.s = h.f.Open(t, h.dir)
	equal(t, "state", h.load(), &broker.StoredState{Sessions: []*broker.StoredSession{wantSession("c", packet.V5, 0, zeroTime)}})
}

func testDeepCopy(t *testing.T, h *harness) {
	// The broker reuses its batches: Commit must not keep references.
	var b broker.Batch
	d := delivery(1, "a", "payload")
	d.SubIDs = []uint32{1}
	d.Msg.Properties = fullProperties()
	sub := broker.StoredSubscription{Filter: "f", QoS: 1}
	ret := broker.StoredMessage{Topic: "r", Payload: []byte("retained"), Retain: true, Properties: fullProperties()}
	b.Add(putSession("c", packet.V5, 0, zeroTime)).
		Add(broker.Op{Kind: broker.OpEnqueue, ClientID: "c", Delivery: &d}).
		Add(broker.Op{Kind: broker.OpPutSubscription, ClientID: "c", Sub: &sub}).
		Add(broker.Op{Kind: broker.OpPutRetained, Retained: &ret})
	if err := h.s.Commit(&b, true); err != nil {
		t.Fatal(err)
	}
	want := h.load()
	d.Msg.Payload[0] = 'X'
	d.SubIDs[0] = 99
	d.Msg.Properties.UserProperties[0].Value = "changed"
	d.Msg.Properties.CorrelationData[0] = 9
	d.Msg.Topic = "changed"
	sub.QoS = 0
	ret.Payload[0] = 'X'
	ret.Properties.UserProperties = nil
	b.Reset()
	equal(t, "after mutating the committed batch", h.load(), want)

	// What Load reports belongs to the Restorer.
	got, err := broker.LoadAll(t.Context(), h.s)
	if err != nil {
		t.Fatal(err)
	}
	q := &got.Sessions[0].Queue[0]
	q.Msg.Payload[0] = 'Y'
	q.SubIDs[0] = 42
	q.Msg.Properties.UserProperties[0].Key = "mutated"
	got.Sessions[0].Subscriptions[0].Filter = "mutated"
	got.Retained[0].Payload[0] = 'Y'
	equal(t, "after mutating what Load reported", h.load(), want)
}

func testConcurrent(t *testing.T, h *harness) {
	const writers, perWriter = 16, 100
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("w%02d", w)
			var b broker.Batch
			if err := h.s.Commit(b.Add(putSession(id, packet.V5, 0, zeroTime)), true); err != nil {
				errs <- err
				return
			}
			for i := range perWriter {
				b.Reset()
				seq := uint64(i + 1)
				b.Add(enqueue(id, delivery(seq, "t/"+id, fmt.Sprint(seq))))
				if i%10 == 0 {
					b.Add(putRetained(broker.StoredMessage{Topic: "r/" + id, Payload: []byte(fmt.Sprint(seq)), Retain: true}))
				}
				if err := h.s.Commit(&b, i%3 != 2); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Commit: %v", err)
	}
	h.restart()
	st := h.load()
	if len(st.Sessions) != writers {
		t.Fatalf("%d sessions after restart, want %d", len(st.Sessions), writers)
	}
	for w, s := range st.Sessions {
		id := fmt.Sprintf("w%02d", w)
		if s.ClientID != id || len(s.Queue) != perWriter {
			t.Fatalf("session %d: %q with %d queued, want %q with %d", w, s.ClientID, len(s.Queue), id, perWriter)
		}
		for i, d := range s.Queue {
			if d.Seq != uint64(i+1) || string(d.Msg.Payload) != fmt.Sprint(i+1) || d.Msg.Topic != "t/"+id {
				t.Fatalf("session %s delivery %d: %s", id, i, dump(d))
			}
		}
	}
	if len(st.Retained) != writers {
		t.Fatalf("%d retained, want %d", len(st.Retained), writers)
	}
	for _, m := range st.Retained {
		if string(m.Payload) != "91" {
			t.Fatalf("retained %s = %q, want the last write 91", m.Topic, m.Payload)
		}
	}
}

func testLargeQueue(t *testing.T, h *harness) {
	const n, per = 50000, 1000
	payload := bytes.Repeat([]byte("m"), 100)
	h.commit(true, putSession("big", packet.V5, broker.NoExpiry, zeroTime), putSession("small", packet.V311, 0, zeroTime))
	var b broker.Batch
	for i := 0; i < n; i += per {
		b.Reset()
		for j := i; j < i+per; j++ {
			d := delivery(uint64(j+1), fmt.Sprintf("topic/%d", j%97), "")
			d.Msg.Payload = payload
			b.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: "big", Delivery: &d})
		}
		b.Add(enqueue("small", delivery(uint64(i/per+1), "s", "s")))
		if err := h.s.Commit(&b, true); err != nil {
			t.Fatal(err)
		}
	}
	h.restart()
	st := h.load()
	q := st.Sessions[0].Queue
	if st.Sessions[0].ClientID != "big" || len(q) != n {
		t.Fatalf("session %q has %d queued, want big with %d", st.Sessions[0].ClientID, len(q), n)
	}
	for i, d := range q {
		if d.Seq != uint64(i+1) || d.Msg.Topic != fmt.Sprintf("topic/%d", i%97) || !bytes.Equal(d.Msg.Payload, payload) {
			t.Fatalf("delivery %d out of order or damaged: seq %d topic %q", i, d.Seq, d.Msg.Topic)
		}
	}
	if got := len(st.Sessions[1].Queue); got != n/per {
		t.Fatalf("small has %d queued, want %d", got, n/per)
	}
}

// testLoadOwnership: what Load hands to the Restorer stays the Restorer's.
// LoadAll keeps shallow copies of the records, so a store that reused a
// payload, topic or subscription identifier buffer for a later record
// would change what was kept before.
func testLoadOwnership(t *testing.T, h *harness) {
	const n = 300
	ops := []broker.Op{putSession("own", packet.V5, broker.NoExpiry, zeroTime)}
	for i := range n {
		d := delivery(uint64(i+1), fmt.Sprintf("t/%d", i), fmt.Sprintf("payload-%d", i))
		d.SubIDs = []uint32{uint32(i + 1)}
		ops = append(ops, enqueue("own", d),
			putRetained(broker.StoredMessage{Topic: fmt.Sprintf("r/%03d", i), Payload: []byte(fmt.Sprintf("retained-%d", i)), Retain: true}))
	}
	h.commit(true, ops...)
	h.restart()
	st := h.load()
	if len(st.Sessions) != 1 || len(st.Sessions[0].Queue) != n || len(st.Retained) != n {
		t.Fatalf("loaded %d sessions, %d retained", len(st.Sessions), len(st.Retained))
	}
	for i, d := range st.Sessions[0].Queue {
		if d.Msg.Topic != fmt.Sprintf("t/%d", i) || string(d.Msg.Payload) != fmt.Sprintf("payload-%d", i) ||
			len(d.SubIDs) != 1 || d.SubIDs[0] != uint32(i+1) {
			t.Fatalf("delivery %d changed after it was reported: topic %q payload %q sub ids %v", i, d.Msg.Topic, d.Msg.Payload, d.SubIDs)
		}
	}
	for i, m := range st.Retained {
		if m.Topic != fmt.Sprintf("r/%03d", i) || string(m.Payload) != fmt.Sprintf("retained-%d", i) {
			t.Fatalf("retained %d changed after it was reported: %q %q", i, m.Topic, m.Payload)
		}
	}
}

// errStop is the error stopRestorer returns.
var errStop = errors.New("storetest: restorer stops")

// stopRestorer fails at the first record of kind and counts the records
// reported after that.
type stopRestorer struct {
	kind   string
	failed bool
	after  int
}

func (r *stopRestorer) record(kind string) error {
	if r.failed {
		r.after++
		return nil
	}
	if kind == r.kind {
		r.failed = true
		return errStop
	}
	return nil
}

func (r *stopRestorer) RestoreSession(*broker.StoredSession) error { return r.record("session") }
func (r *stopRestorer) RestoreSubscription(string, *broker.StoredSubscription) error {
	return r.record("subscription")
}
func (r *stopRestorer) RestoreDelivery(string, *broker.StoredDelivery) error {
	return r.record("delivery")
}
func (r *stopRestorer) RestoreInbound(string, uint16, uint64) error { return r.record("inbound") }
func (r *stopRestorer) RestoreRetained(*broker.StoredMessage) error { return r.record("retained") }

// testLoadStops: an error from the Restorer ends Load, which returns it,
// at whatever kind of record it came; nothing is reported after it.
func testLoadStops(t *testing.T, h *harness) {
	var ops []broker.Op
	for _, id := range []string{"a", "b"} {
		ops = append(ops, putSession(id, packet.V5, broker.NoExpiry, zeroTime),
			putSub(id, broker.StoredSubscription{Filter: "f/" + id, QoS: 1}),
			enqueue(id, delivery(1, "f/"+id, "x")), enqueue(id, delivery(2, "f/"+id, "y")),
			broker.Op{Kind: broker.OpPutInbound, ClientID: id, PacketID: 7},
			broker.Op{Kind: broker.OpPutInbound, ClientID: id, PacketID: 8},
			putRetained(broker.StoredMessage{Topic: "r/" + id, Payload: []byte("r"), Retain: true}))
	}
	h.commit(true, ops...)
	for _, kind := range []string{"session", "subscription", "delivery", "inbound", "retained"} {
		r := &stopRestorer{kind: kind}
		err := h.s.Load(t.Context(), r)
		if !errors.Is(err, errStop) {
			t.Fatalf("restorer failing at the first %s: Load returned %v, want its error", kind, err)
		}
		if r.after != 0 {
			t.Fatalf("restorer failing at the first %s: %d records reported after the error", kind, r.after)
		}
	}
}
