package session

import "sync/atomic"

// DropReason is why Enqueue dropped messages.
type DropReason uint8

// The drop reasons. The first four are queue bounds: the overflow policy
// applies and the drop is counted in Stats.Dropped.
const (
	NotDropped       DropReason = iota
	DropQueueFull               // the session's bound in messages (Limits.MaxMessages)
	DropQueueBytes              // the session's bound in bytes (Limits.MaxBytes), or a message larger than it
	DropTenantQuota             // the tenant's shared bound (Limits.Quota)
	DropMemoryBudget            // the broker's bound for all sessions (Limits.Budget)
	DropOfflineQoS0             // a QoS 0 message for an offline session that does not queue them
)

// ByLimit reports whether r is a queue bound (not an offline QoS 0 message).
func (r DropReason) ByLimit() bool { return r >= DropQueueFull && r <= DropMemoryBudget }

// bySession reports whether r is a bound of the session or its tenant,
// which dropping the session's oldest messages can make room under.
func (r DropReason) bySession() bool { return r >= DropQueueFull && r <= DropTenantQuota }

// String names r for logs.
func (r DropReason) String() string {
	switch r {
	case NotDropped:
		return "not dropped"
	case DropQueueFull:
		return "queue full"
	case DropQueueBytes:
		return "queue bytes full"
	case DropTenantQuota:
		return "tenant queue bound reached"
	case DropMemoryBudget:
		return "memory budget"
	case DropOfflineQoS0:
		return "QoS 0 while offline"
	}
	return "unknown"
}

// Tenant is what the sessions of one tenant count together: the messages
// their queues dropped. The broker makes one per tenant and gives it to
// each session of the tenant (SetTenant). Safe for concurrent use.
type Tenant struct {
	// Name is the tenant's name ("" for clients in no tenant); it never
	// changes.
	Name        string
	dropped     atomic.Uint64
	droppedQoS0 atomic.Uint64
}

// NewTenant returns the counters of tenant name, at zero.
func NewTenant(name string) *Tenant { return &Tenant{Name: name} }

// Dropped returns the messages the tenant's sessions dropped: by a queue
// bound (messages, bytes, the tenant's shared bound, the broker's memory
// budget), and QoS 0 messages
// not queued for offline sessions.
func (t *Tenant) Dropped() (byLimit, offlineQoS0 uint64) {
	return t.dropped.Load(), t.droppedQoS0.Load()
}

// SetTenant makes the session's drops count for t too (nil: for no
// tenant). Drops already counted stay where they were.
func (s *Session) SetTenant(t *Tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.tenant = t
}

// Tenant returns the tenant SetTenant gave the session, or nil.
func (s *Session) Tenant() *Tenant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.tenant
}

// Limits returns the session's queue limits.
func (s *Session) Limits() Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limits
}

// TakeDropReport returns the messages dropped by a queue bound since the
// last report and the bound that dropped the last of them; the next drop
// is then reported by Enqueue as the first again (Enqueued.Report).
func (s *Session) TakeDropReport() (n uint64, reason DropReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = s.dropped.Load() - s.mu.reported
	s.mu.reported += n
	s.mu.reportDue = false
	return n, s.mu.lastReason
}

// countDropLocked counts n messages dropped for reason, in the session and
// its tenant. It reports whether they are the first dropped by a queue
// bound since the last TakeDropReport.
func (s *Session) countDropLocked(n int, reason DropReason) (first bool) {
	if n == 0 {
		return false
	}
	t := s.mu.tenant
	if reason == DropOfflineQoS0 {
		s.droppedQoS0.Add(uint64(n))
		if t != nil {
			t.droppedQoS0.Add(uint64(n))
		}
		return false
	}
	s.dropped.Add(uint64(n))
	if t != nil {
		t.dropped.Add(uint64(n))
	}
	s.mu.lastReason = reason
	first = !s.mu.reportDue
	s.mu.reportDue = true
	return first
}
