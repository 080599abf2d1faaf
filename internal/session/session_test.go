package session

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// wakeFunc is a function as a Waker.
type wakeFunc func()

func (f wakeFunc) Wake() { f() }

func msg(topic string, qos byte) *Message {
	return &Message{Topic: topic, Payload: []byte("payload"), QoS: qos}
}

func online(t *testing.T, limits Limits, inflight int) (*Session, *int) {
	t.Helper()
	s := New("c1", limits)
	wakes := new(int)
	s.Attach(wakeFunc(func() { *wakes++ }), inflight)
	return s, wakes
}

func TestEnqueueWakesOnlineSessionOnly(t *testing.T) {
	s := New("c", Limits{MaxMessages: 10})
	if r := s.Enqueue(Delivery{Msg: msg("a", 1), QoS: 1}); !r.Accepted || r.Wake != nil {
		t.Fatalf("offline enqueue: %+v, want queued without wake", r)
	}
	s.Attach(wakeFunc(func() {}), 10)
	if r := s.Enqueue(Delivery{Msg: msg("a", 1), QoS: 1}); !r.Accepted || r.Wake == nil {
		t.Fatalf("online enqueue: %+v, want queued with wake", r)
	}
}

func TestOverflowPolicies(t *testing.T) {
	tests := []struct {
		name      string
		limits    Limits
		wantFirst string // topic of the first message left in the queue
		wantQueue int
	}{
		{"drop-new keeps the oldest", Limits{MaxMessages: 3, Policy: DropNew}, "t0", 3},
		{"drop-oldest keeps the newest", Limits{MaxMessages: 3, Policy: DropOldest}, "t2", 3},
		{"byte limit", Limits{MaxBytes: 3 * (2 + 7), Policy: DropNew}, "t0", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New("c", tt.limits)
			for i := 0; i < 5; i++ {
				s.Enqueue(Delivery{Msg: msg(fmt.Sprintf("t%d", i), 1), QoS: 1})
			}
			st := s.Stats()
			if st.Queued != tt.wantQueue || st.Dropped != 2 {
				t.Fatalf("queued %d dropped %d, want %d and 2 (every drop counted)", st.Queued, st.Dropped, tt.wantQueue)
			}
			s.Attach(wakeFunc(func() {}), 10)
			out := s.TakeBatch(nil, 10)
			if out[0].Delivery.Msg.Topic != tt.wantFirst {
				t.Fatalf("first delivered %s, want %s", out[0].Delivery.Msg.Topic, tt.wantFirst)
			}
		})
	}
}

func TestOfflineQoS0DroppedUnlessConfigured(t *testing.T) {
	s := New("c", Limits{MaxMessages: 10})
	if s.Enqueue(Delivery{Msg: msg("a", 0)}).Accepted {
		t.Fatal("QoS 0 queued for an offline session")
	}
	if s.Stats().DroppedQoS0 != 1 {
		t.Fatal("offline QoS 0 drop not counted")
	}
	s = New("c", Limits{MaxMessages: 10, QueueQoS0Offline: true})
	if !s.Enqueue(Delivery{Msg: msg("a", 0)}).Accepted {
		t.Fatal("QoS 0 not queued with QueueQoS0Offline")
	}
}

func TestInflightWindowHoldsOrder(t *testing.T) {
	s, _ := online(t, Limits{MaxMessages: 100}, 2)
	for i := 0; i < 4; i++ {
		s.Enqueue(Delivery{Msg: msg(fmt.Sprintf("t%d", i), 1), QoS: 1})
	}
	out := s.TakeBatch(nil, 10)
	if len(out) != 2 {
		t.Fatalf("took %d with a window of 2", len(out))
	}
	if s.HasPending() {
		t.Fatal("HasPending with a full window")
	}
	if _, ok := s.Puback(out[0].PacketID); !ok {
		t.Fatal("puback of an inflight id refused")
	}
	if _, ok := s.Puback(out[0].PacketID); ok {
		t.Fatal("second puback of the same id accepted")
	}
	out2 := s.TakeBatch(nil, 10)
	if len(out2) != 1 || out2[0].Delivery.Msg.Topic != "t2" {
		t.Fatalf("after one ack took %v, want t2 alone", out2)
	}
}

func TestPacketIDsSkipInflight(t *testing.T) {
	s, _ := online(t, Limits{}, 65535)
	seen := map[uint16]bool{}
	for i := 0; i < 3; i++ {
		s.Enqueue(Delivery{Msg: msg("a", 1), QoS: 1})
	}
	for _, o := range s.TakeBatch(nil, 10) {
		if o.PacketID == 0 || seen[o.PacketID] { // [MQTT-2.3.1-1] [MQTT-2.3.1-2]
			t.Fatalf("packet id %d zero or reused", o.PacketID)
		}
		seen[o.PacketID] = true
	}
	// Wrap the counter around: ids still in flight are never handed out again.
	s.mu.nextPID = 65534
	for i := 0; i < 5; i++ {
		s.Enqueue(Delivery{Msg: msg("a", 1), QoS: 1})
	}
	for _, o := range s.TakeBatch(nil, 10) {
		if o.PacketID == 0 || seen[o.PacketID] {
			t.Fatalf("packet id %d zero or reused after wrap", o.PacketID)
		}
		seen[o.PacketID] = true
	}
}

func TestReattachResendsInOrderWithDup(t *testing.T) {
	s, _ := online(t, Limits{}, 10)
	s.Enqueue(Delivery{Msg: msg("q1", 1), QoS: 1})
	s.Enqueue(Delivery{Msg: msg("q2", 2), QoS: 2})
	s.Enqueue(Delivery{Msg: msg("q2b", 2), QoS: 2})
	out := s.TakeBatch(nil, 10)
	if _, _, ok := s.Pubrec(out[2].PacketID); !ok {
		t.Fatal("pubrec refused")
	}
	s.Detach()
	s.Attach(wakeFunc(func() {}), 10)
	again := s.TakeBatch(nil, 10)
	if len(again) != 3 {
		t.Fatalf("resent %d items, want 3", len(again))
	}
	// [MQTT-4.4.0-1]: PUBLISH again with DUP, PUBREL for the one already received.
	for i, want := range []struct {
		kind OutKind
		pid  uint16
	}{{OutPublish, out[0].PacketID}, {OutPublish, out[1].PacketID}, {OutPubrel, out[2].PacketID}} {
		if again[i].Kind != want.kind || again[i].PacketID != want.pid {
			t.Fatalf("resend %d: kind %d pid %d, want kind %d pid %d", i, again[i].Kind, again[i].PacketID, want.kind, want.pid)
		}
		if want.kind == OutPublish && !again[i].Dup {
			t.Fatalf("resend %d without DUP", i)
		}
	}
	if _, ok := s.Pubcomp(out[2].PacketID); !ok || s.Stats().Inflight != 2 {
		t.Fatal("pubcomp did not complete the QoS 2 delivery")
	}
}

func TestInboundQoS2Dedup(t *testing.T) {
	s := New("c", Limits{})
	if !s.ReceiveQoS2(5) {
		t.Fatal("first QoS 2 publish not first")
	}
	if s.ReceiveQoS2(5) { // [MQTT-4.3.3-2]
		t.Fatal("resent QoS 2 publish treated as new before PUBREL")
	}
	if !s.Pubrel(5) || s.Pubrel(5) {
		t.Fatal("pubrel did not release exactly once")
	}
	if !s.ReceiveQoS2(5) {
		t.Fatal("id not reusable after PUBREL")
	}
}

func TestRetainedBypassLimitsAndGoFirst(t *testing.T) {
	s, _ := online(t, Limits{MaxMessages: 1}, 100)
	s.Enqueue(Delivery{Msg: msg("live", 0)})
	var ds []Delivery
	for i := 0; i < 50; i++ {
		ds = append(ds, Delivery{Msg: msg(fmt.Sprintf("r%d", i), 1), QoS: 1, Retain: true})
	}
	s.EnqueueRetained(ds)
	out := s.TakeBatch(nil, 100)
	if len(out) != 51 {
		t.Fatalf("took %d, want all 50 retained and the live message", len(out))
	}
	if out[0].Delivery.Msg.Topic != "r0" || out[50].Delivery.Msg.Topic != "live" {
		t.Fatalf("order: first %s last %s", out[0].Delivery.Msg.Topic, out[50].Delivery.Msg.Topic)
	}
}

func TestConcurrentEnqueueAndTake(t *testing.T) {
	s, _ := online(t, Limits{MaxMessages: 1 << 20}, 1000)
	var wg sync.WaitGroup
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				s.Enqueue(Delivery{Msg: msg("a", 1), QoS: 1})
			}
		}()
	}
	got := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		for _, o := range s.TakeBatch(nil, 64) {
			got++
			s.Puback(o.PacketID)
		}
		select {
		case <-done:
			for out := s.TakeBatch(nil, 64); len(out) > 0; out = s.TakeBatch(nil, 64) {
				for _, o := range out {
					got++
					s.Puback(o.PacketID)
				}
			}
			if got != 4000 {
				t.Fatalf("delivered %d of 4000", got)
			}
			return
		default:
		}
	}
}

func TestQuotaSharedAndMoved(t *testing.T) {
	q := &Quota{MaxMessages: 3}
	a := New("a", Limits{Quota: q})
	b := New("b", Limits{Quota: q})
	a.Enqueue(Delivery{Msg: msg("t", 1), QoS: 1})
	a.Enqueue(Delivery{Msg: msg("t", 1), QoS: 1})
	b.Enqueue(Delivery{Msg: msg("t", 1), QoS: 1})
	if r := b.Enqueue(Delivery{Msg: msg("t", 1), QoS: 1}); r.Accepted {
		t.Fatal("a fourth message accepted under a shared bound of 3")
	}
	a.SetQuota(nil) // a leaves the tenant: its two messages stop counting
	if n, _ := q.Queued(); n != 1 {
		t.Fatalf("quota counts %d after a left, want 1", n)
	}
	if r := b.Enqueue(Delivery{Msg: msg("t", 1), QoS: 1}); !r.Accepted {
		t.Fatal("room freed by a was not usable by b")
	}
	b.Attach(wakeFunc(func() {}), 10)
	for _, o := range b.TakeBatch(nil, 10) {
		b.Puback(o.PacketID)
	}
	if n, size := q.Queued(); n != 0 || size != 0 {
		t.Fatalf("quota counts %d messages %d bytes after b's queue drained", n, size)
	}
}

func TestDropExpired(t *testing.T) {
	now := time.Unix(1000, 0)
	s := New("c", Limits{Quota: &Quota{}})
	s.Enqueue(Delivery{Msg: &Message{Topic: "a", QoS: 1, Expiry: now.Add(-time.Second)}, QoS: 1, Seq: 1})
	s.Enqueue(Delivery{Msg: &Message{Topic: "b", QoS: 1}, QoS: 1, Seq: 2})
	s.Enqueue(Delivery{Msg: &Message{Topic: "c", QoS: 1, Expiry: now.Add(time.Hour)}, QoS: 1, Seq: 3})
	if n, seqs := s.DropExpired(now); n != 1 || len(seqs) != 1 || seqs[0] != 1 {
		t.Fatalf("dropped %d %v, want the one expired message (seq 1)", n, seqs)
	}
	if s.Stats().Queued != 2 || s.mu.q.expiring != 1 {
		t.Fatalf("queued %d, expiring %d; want 2 and 1", s.Stats().Queued, s.mu.q.expiring)
	}
	if n, _ := s.DropExpired(now.Add(2 * time.Hour)); n != 1 || s.mu.q.expiring != 0 {
		t.Fatalf("second sweep dropped %d, expiring left %d", n, s.mu.q.expiring)
	}
	if n, _ := s.DropExpired(now.Add(10 * time.Hour)); n != 0 || s.Stats().Queued != 1 {
		t.Fatal("a message without expiry was dropped")
	}
}
