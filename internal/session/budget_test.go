package session

import (
	"fmt"
	"sync"
	"testing"
)

// sized is a message of n bytes (topic and payload together).
func sized(topic string, n int) *Message {
	return &Message{Topic: topic, Payload: make([]byte, n-len(topic)), QoS: 1}
}

// TestTakeBatchLimitedBytes: a batch stops before the message that would
// take its bytes over the bound; the first message is taken whatever its
// size unless Strict; more says something was left at the bound.
func TestTakeBatchLimitedBytes(t *testing.T) {
	tests := []struct {
		name     string
		sizes    []int
		lim      BatchLimit
		want     int
		wantMore bool
	}{
		{"under the bound", []int{10, 10, 10}, BatchLimit{Items: 10, Bytes: 100}, 3, false},
		{"stops at the bound", []int{40, 40, 40}, BatchLimit{Items: 10, Bytes: 100}, 2, true},
		{"exactly the bound", []int{50, 50, 5}, BatchLimit{Items: 10, Bytes: 100}, 2, true},
		{"first taken whatever its size", []int{500, 10}, BatchLimit{Items: 10, Bytes: 100}, 1, true},
		{"strict leaves a large first", []int{500, 10}, BatchLimit{Items: 10, Bytes: 100, Strict: true}, 0, true},
		{"items bound", []int{5, 5, 5}, BatchLimit{Items: 2}, 2, true},
		{"no bytes bound", []int{1 << 20, 1 << 20}, BatchLimit{Items: 10}, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := online(t, Limits{}, 100)
			for i, n := range tc.sizes {
				s.Enqueue(Delivery{Msg: sized(fmt.Sprintf("t%d", i), n), QoS: 0})
			}
			out, more := s.TakeBatchLimited(nil, tc.lim)
			if len(out) != tc.want || more != tc.wantMore {
				t.Fatalf("took %d (more %v), want %d (more %v)", len(out), more, tc.want, tc.wantMore)
			}
			if rest := s.TakeBatch(nil, 100); len(rest) != len(tc.sizes)-tc.want {
				t.Fatalf("%d left, want %d", len(rest), len(tc.sizes)-tc.want)
			}
		})
	}
}

// TestInflightCountsAgainstBytes: a message sent and not yet acknowledged
// still counts against MaxBytes, so a client that reads but never
// acknowledges cannot make the session hold more than the bound; the
// acknowledgement frees it. Retained messages owed to a subscription
// count neither queued nor in flight.
func TestInflightCountsAgainstBytes(t *testing.T) {
	s, _ := online(t, Limits{MaxBytes: 100}, 1000)
	for i := range 5 {
		if r := s.Enqueue(Delivery{Msg: sized(fmt.Sprintf("q%d", i), 20), QoS: 1}); !r.Accepted {
			t.Fatalf("message %d refused under the bound", i)
		}
	}
	sent := s.TakeBatch(nil, 100) // all five in flight now, none acknowledged
	if st := s.Stats(); st.QueuedBytes != 100 || st.Inflight != 5 {
		t.Fatalf("queued bytes %d inflight %d, want 100 and 5", st.QueuedBytes, st.Inflight)
	}
	if r := s.Enqueue(Delivery{Msg: sized("x", 20), QoS: 1}); r.Accepted {
		t.Fatal("accepted over MaxBytes while 100 bytes are in flight")
	}
	s.Puback(sent[0].PacketID)
	if r := s.Enqueue(Delivery{Msg: sized("y", 20), QoS: 1}); !r.Accepted {
		t.Fatal("refused after an acknowledgement freed 20 bytes")
	}
	// A PUBREC releases the message too (it is never sent again).
	s2, _ := online(t, Limits{MaxBytes: 20}, 10)
	s2.Enqueue(Delivery{Msg: sized("a", 20), QoS: 2})
	o := s2.TakeBatch(nil, 1)
	if _, _, ok := s2.Pubrec(o[0].PacketID); !ok {
		t.Fatal("PUBREC not taken")
	}
	if st := s2.Stats(); st.QueuedBytes != 0 {
		t.Fatalf("%d bytes counted after PUBREC, want 0", st.QueuedBytes)
	}
	// Retained: never counted.
	s3, _ := online(t, Limits{MaxBytes: 20}, 10)
	s3.EnqueueRetained([]Delivery{{Msg: sized("r", 1000), QoS: 1}})
	s3.TakeBatch(nil, 10)
	if st := s3.Stats(); st.QueuedBytes != 0 {
		t.Fatalf("retained message in flight counts %d bytes, want 0", st.QueuedBytes)
	}
}

// TestBudgetSharedBySessions: sessions naming one Budget refuse a message
// that would take the bytes they hold together (queued and in flight)
// over it, by their policy, and say the drop was the budget's; the bytes
// come back as messages are acknowledged or sessions discarded, and Held
// is exact once they do.
func TestBudgetSharedBySessions(t *testing.T) {
	for _, policy := range []OverflowPolicy{DropNew, DropOldest} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			b := NewBudget(100)
			a, _ := online(t, Limits{Budget: b, Policy: policy}, 10)
			c := New("c2", Limits{Budget: b, Policy: policy})
			a.Enqueue(Delivery{Msg: sized("a1", 40), QoS: 1})
			c.Enqueue(Delivery{Msg: sized("c1", 40), QoS: 1})
			if got := b.Held(); got != 80 {
				t.Fatalf("held %d, want 80", got)
			}
			r := c.Enqueue(Delivery{Msg: sized("c2", 40), QoS: 1})
			switch policy {
			case DropNew:
				if r.Accepted || r.Reason != DropMemoryBudget || r.Dropped != 1 {
					t.Fatalf("over the budget: %+v, want refused, DropMemoryBudget", r)
				}
			case DropOldest: // c's own oldest makes room
				if !r.Accepted || r.Reason != DropMemoryBudget || r.Dropped != 1 {
					t.Fatalf("over the budget: %+v, want the oldest dropped, DropMemoryBudget", r)
				}
			}
			if b.Dropped() != 1 || c.Stats().Dropped != 1 {
				t.Fatalf("budget dropped %d, session %d, want 1 and 1", b.Dropped(), c.Stats().Dropped)
			}
			out := a.TakeBatch(nil, 10) // in flight: still held
			if got := b.Held(); got != 80 {
				t.Fatalf("held %d with a's message in flight, want 80", got)
			}
			a.Puback(out[0].PacketID)
			c.Discard()
			if got := b.Held(); got != 0 {
				t.Fatalf("held %d after the ack and the discard, want 0", got)
			}
			if r := c.Enqueue(Delivery{Msg: sized("late", 10), QoS: 1}); r.Accepted || b.Held() != 0 {
				t.Fatalf("a discarded session queued %+v (held %d)", r, b.Held())
			}
			// Under drop-oldest a session whose queue holds less than the
			// new message needs drops the new one, not its queue.
			d := New("c3", Limits{Budget: b, Policy: policy})
			d.Enqueue(Delivery{Msg: sized("d1", 10), QoS: 1})
			filler := New("c4", Limits{Budget: b})
			filler.Enqueue(Delivery{Msg: sized("f1", 85), QoS: 1})
			if r := d.Enqueue(Delivery{Msg: sized("d2", 40), QoS: 1}); r.Accepted || r.Dropped != 1 || d.Stats().Queued != 1 {
				t.Fatalf("enqueue past the budget: %+v, %d queued; want the new one dropped, the old kept", r, d.Stats().Queued)
			}
		})
	}
}

// TestBudgetStripesAddUp: concurrent charges on every stripe add up to
// the exact total, and the bound is seen within the stripes' slack.
func TestBudgetStripesAddUp(t *testing.T) {
	b := NewBudget(0)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10_000 {
				b.Charge(g, 1000)
				if i%2 == 1 {
					b.Charge(g, -1000)
				}
			}
		}()
	}
	wg.Wait()
	if got, want := b.Held(), int64(32*5_000*1000); got != want {
		t.Fatalf("held %d, want %d", got, want)
	}
	held := b.Held()
	b.SetMax(held + 10<<20) // grain 64 KiB: 1 MiB of slack
	slack := budgetStripes * budgetMaxGrain
	if b.full(0, 1) {
		t.Fatal("full below the bound")
	}
	b.Charge(0, 10<<20) // carried to the total at once
	if !b.full(3, slack+1) {
		t.Fatalf("not full past the bound and its slack (held %d, max %d)", b.Held(), b.Max())
	}
}
