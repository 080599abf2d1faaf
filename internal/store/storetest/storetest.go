// Package storetest is the conformance suite every broker.Store passes:
// each OpKind, restart (Close and open again on the same directory),
// atomicity, deep copies, concurrent commits, large queues, and Load's
// contract (order, ownership of what it reports, a Restorer's error).
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Factory{Persistent: true, Open: openMyStore})
//	}
package storetest

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// Factory opens the store under test.
type Factory struct {
	// Open opens the store kept in dir, failing t on error. Each subtest
	// passes a fresh directory, and calls Open again on the same one after
	// Close to check what survives a restart. The suite closes every store
	// it opens.
	Open func(t *testing.T, dir string) broker.Store
	// Persistent says that a store opened again on dir holds what was
	// committed before Close. Without it, the suite checks the restart
	// cases on the same store, without closing it.
	Persistent bool
}

// Run runs the suite as subtests of t.
func Run(t *testing.T, f Factory) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newHarness(t, f))
		})
	}
}

// cases are the subtests of Run.
var cases = []struct {
	name string
	fn   func(t *testing.T, h *harness)
}{
	{"Empty", testEmpty},
	{"SessionPutUpdate", testSessionPutUpdate},
	{"SessionWill", testSessionWill},
	{"SessionDelete", testSessionDelete},
	{"TenantKeys", testTenantKeys},
	{"Subscriptions", testSubscriptions},
	{"Queue", testQueue},
	{"Inflight", testInflight},
	{"Inbound", testInbound},
	{"Retained", testRetained},
	{"Properties", testProperties},
	{"OrderWithinBatch", testOrderWithinBatch},
	{"UnknownSession", testUnknownSession},
	{"Atomic", testAtomic},
	{"CommitAfterClose", testCommitAfterClose},
	{"DeepCopy", testDeepCopy},
	{"Concurrent", testConcurrent},
	{"LargeQueue", testLargeQueue},
	{"LoadOwnership", testLoadOwnership},
	{"LoadStops", testLoadStops},
}

// harness holds the store of one subtest.
type harness struct {
	t   *testing.T
	f   Factory
	dir string
	s   broker.Store
}

func newHarness(t *testing.T, f Factory) *harness {
	h := &harness{t: t, f: f, dir: t.TempDir()}
	h.s = f.Open(t, h.dir)
	t.Cleanup(func() {
		if err := h.s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// commit commits ops as one batch and fails the test on error.
func (h *harness) commit(durable bool, ops ...broker.Op) {
	h.t.Helper()
	if err := h.s.Commit(&broker.Batch{Ops: ops}, durable); err != nil {
		h.t.Fatalf("Commit: %v", err)
	}
}

// restart closes the store and opens it again on the same directory
// (when the factory is persistent).
func (h *harness) restart() {
	h.t.Helper()
	if !h.f.Persistent {
		return
	}
	if err := h.s.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	h.s = h.f.Open(h.t, h.dir)
}

// load loads and normalizes the store's content.
func (h *harness) load() *broker.StoredState {
	h.t.Helper()
	st, err := broker.LoadAll(context.Background(), h.s)
	if err != nil {
		h.t.Fatalf("Load: %v", err)
	}
	if st == nil {
		h.t.Fatal("Load returned nil state")
	}
	normalize(st)
	return st
}

// session returns the loaded session id, or nil.
func (h *harness) session(id string) *broker.StoredSession {
	h.t.Helper()
	for _, s := range h.load().Sessions {
		if s.ClientID == id {
			return s
		}
	}
	return nil
}

// mustSession is session failing when id is missing.
func (h *harness) mustSession(id string) *broker.StoredSession {
	h.t.Helper()
	s := h.session(id)
	if s == nil {
		h.t.Fatalf("session %q missing after Load", id)
	}
	return s
}

// normalize maps what stores may represent differently to one form:
// times to UTC without monotonic reading, empty slices to nil, empty
// properties to nil, and the message of an AwaitPubcomp delivery (which a
// store may drop) to the zero message.
func normalize(st *broker.StoredState) {
	for _, s := range st.Sessions {
		s.DisconnectedAt = normTime(s.DisconnectedAt)
		if len(s.Subscriptions) == 0 {
			s.Subscriptions = nil
		}
		if len(s.InboundQoS2) == 0 {
			s.InboundQoS2 = nil
		}
		if len(s.Queue) == 0 {
			s.Queue = nil
		}
		for i := range s.Queue {
			normDelivery(&s.Queue[i])
		}
		if s.Will != nil {
			normMessage(s.Will)
		}
	}
	if len(st.Sessions) == 0 {
		st.Sessions = nil
	}
	for _, m := range st.Retained {
		normMessage(m)
	}
	if len(st.Retained) == 0 {
		st.Retained = nil
	}
}

func normDelivery(d *broker.StoredDelivery) {
	if d.State == broker.AwaitPubcomp {
		*d = broker.StoredDelivery{Seq: d.Seq, PacketID: d.PacketID, State: d.State}
		return
	}
	if len(d.SubIDs) == 0 {
		d.SubIDs = nil
	}
	normMessage(&d.Msg)
}

func normMessage(m *broker.StoredMessage) {
	m.Expiry = normTime(m.Expiry)
	if len(m.Payload) == 0 {
		m.Payload = nil
	}
	if m.Properties != nil && m.Properties.IsZero() {
		m.Properties = nil
	}
	if p := m.Properties; p != nil {
		if len(p.CorrelationData) == 0 {
			p.CorrelationData = nil
		}
		if len(p.SubscriptionIdentifiers) == 0 {
			p.SubscriptionIdentifiers = nil
		}
		if len(p.UserProperties) == 0 {
			p.UserProperties = nil
		}
	}
}

func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.Unix(0, t.UnixNano()).UTC()
}

// equal fails the test when got and want differ.
func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", what, dump(got), dump(want))
	}
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Fixtures.

var (
	zeroTime time.Time
	t0       = time.Date(2026, 11, 22, 10, 30, 0, 123456789, time.UTC)
	t1       = t0.Add(90 * time.Minute)
)

func putSession(id string, v packet.Version, expiry uint32, disc time.Time) broker.Op {
	return broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{
		ClientID: id, Version: v, ExpiryInterval: expiry, DisconnectedAt: disc,
	}}
}

func wantSession(id string, v packet.Version, expiry uint32, disc time.Time) *broker.StoredSession {
	return &broker.StoredSession{ClientID: id, Version: v, ExpiryInterval: expiry, DisconnectedAt: normTime(disc)}
}

func putSub(id string, sub broker.StoredSubscription) broker.Op {
	return broker.Op{Kind: broker.OpPutSubscription, ClientID: id, Sub: &sub}
}

func enqueue(id string, d broker.StoredDelivery) broker.Op {
	return broker.Op{Kind: broker.OpEnqueue, ClientID: id, Delivery: &d}
}

func setInflight(id string, seq uint64, pid uint16, st broker.InflightState) broker.Op {
	return broker.Op{Kind: broker.OpSetInflight, ClientID: id, Delivery: &broker.StoredDelivery{Seq: seq, PacketID: pid, State: st}}
}

func dequeue(id string, seq uint64) broker.Op {
	return broker.Op{Kind: broker.OpDequeue, ClientID: id, Seq: seq}
}

func putRetained(m broker.StoredMessage) broker.Op {
	return broker.Op{Kind: broker.OpPutRetained, Retained: &m}
}

// delivery returns a simple QoS 1 delivery of seq on topic.
func delivery(seq uint64, topic, payload string) broker.StoredDelivery {
	return broker.StoredDelivery{
		Seq: seq, QoS: 1,
		Msg: broker.StoredMessage{Topic: topic, Payload: []byte(payload), QoS: 1, Origin: "pub"},
	}
}

// fullProperties returns 5.0 PUBLISH properties with every kind of field.
func fullProperties() *packet.Properties {
	p := &packet.Properties{
		PayloadFormatIndicator:  1,
		MessageExpiryInterval:   3600,
		ContentType:             "application/json",
		ResponseTopic:           "reply/to/me",
		CorrelationData:         []byte{0, 1, 2, 0xff},
		SubscriptionIdentifiers: []uint32{7, 268435455},
		UserProperties: []packet.UserProperty{
			{Key: "z", Value: "last-key-first"},
			{Key: "a", Value: "1"},
			{Key: "a", Value: "2"},
			{Key: "", Value: ""},
			{Key: "ünïcode", Value: "✓"},
		},
	}
	p.Set(packet.PropPayloadFormatIndicator)
	p.Set(packet.PropMessageExpiryInterval)
	p.Set(packet.PropContentType)
	p.Set(packet.PropResponseTopic)
	p.Set(packet.PropCorrelationData)
	return p
}
