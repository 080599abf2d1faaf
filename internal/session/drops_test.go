package session

import (
	"fmt"
	"testing"
)

// TestDropsCountedPerReasonInSessionAndTenant: every message a queue bound
// drops is counted in the session and in its tenant, with the bound named
// (DESIGN.md section 3: every drop counted), the broker's memory budget
// among them; offline QoS 0 messages are counted apart.
func TestDropsCountedPerReasonInSessionAndTenant(t *testing.T) {
	size := msg("t0", 1).Size()
	tests := []struct {
		name        string
		limits      Limits
		online      bool
		qos         byte
		wantReason  DropReason
		wantDropped uint64 // by a queue bound, of 5 enqueued
		wantQoS0    uint64
	}{
		{"messages, drop-new", Limits{MaxMessages: 3}, true, 1, DropQueueFull, 2, 0},
		{"messages, drop-oldest", Limits{MaxMessages: 3, Policy: DropOldest}, true, 1, DropQueueFull, 2, 0},
		{"bytes", Limits{MaxBytes: 3 * size}, true, 1, DropQueueBytes, 2, 0},
		{"tenant quota", Limits{Quota: &Quota{MaxMessages: 3}}, true, 1, DropTenantQuota, 2, 0},
		{"memory budget, drop-new", Limits{Budget: NewBudget(int64(3 * size))}, true, 1, DropMemoryBudget, 2, 0},
		{"memory budget, drop-oldest", Limits{Budget: NewBudget(int64(3 * size)), Policy: DropOldest}, true, 1, DropMemoryBudget, 2, 0},
		{"offline QoS 0", Limits{MaxMessages: 3}, false, 0, DropOfflineQoS0, 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New("c", tt.limits)
			tenant := NewTenant("T")
			s.SetTenant(tenant)
			if tt.online {
				s.Attach(wakeFunc(func() {}), 1)
			}
			var last Enqueued
			for i := range 5 {
				if r := s.Enqueue(Delivery{Msg: msg(fmt.Sprintf("t%d", i), tt.qos), QoS: tt.qos}); r.Dropped > 0 {
					last = r
				}
			}
			if last.Reason != tt.wantReason {
				t.Fatalf("reason %v, want %v", last.Reason, tt.wantReason)
			}
			st := s.Stats()
			byLimit, qos0 := tenant.Dropped()
			if st.Dropped != tt.wantDropped || st.DroppedQoS0 != tt.wantQoS0 || byLimit != tt.wantDropped || qos0 != tt.wantQoS0 {
				t.Fatalf("session dropped %d + %d QoS 0, tenant %d + %d; want %d + %d in both",
					st.Dropped, st.DroppedQoS0, byLimit, qos0, tt.wantDropped, tt.wantQoS0)
			}
			if b := tt.limits.Budget; b != nil && b.Dropped() != tt.wantDropped {
				t.Fatalf("budget counted %d drops, want %d", b.Dropped(), tt.wantDropped)
			}
			if s.Tenant() != tenant {
				t.Fatal("Tenant() is not the tenant set")
			}
		})
	}
}

// TestDetachCountsOfflineQoS0InTenant: QoS 0 messages still queued when
// the client goes offline are dropped and counted in the tenant too.
func TestDetachCountsOfflineQoS0InTenant(t *testing.T) {
	s, _ := online(t, Limits{}, 10)
	tenant := NewTenant("T")
	s.SetTenant(tenant)
	s.Enqueue(Delivery{Msg: msg("a", 0)})
	s.Enqueue(Delivery{Msg: msg("b", 1), QoS: 1})
	s.Detach()
	if _, qos0 := tenant.Dropped(); qos0 != 1 || s.Stats().DroppedQoS0 != 1 || s.Stats().Queued != 1 {
		t.Fatalf("tenant QoS 0 drops %d, session %+v; want 1 dropped, the QoS 1 message kept", qos0, s.Stats())
	}
}
