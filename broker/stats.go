package broker

import "sync/atomic"

// counters are the broker-wide statistics, updated without locks.
type counters struct {
	connections     atomic.Uint64
	messagesDropped atomic.Uint64
	storeErrors     atomic.Uint64
	parks           atomic.Uint64
	promotions      atomic.Uint64
	parked          atomic.Int64
	// The counters every message updates are striped: a connection adds
	// to its own stripe (stripeOf), so readers and writers on different
	// cores do not contend for one cache line per message; a snapshot
	// sums the stripes.
	stripes    [statStripes]stripe
	nextStripe atomic.Uint32
}

// statStripes is the number of stripes of the per-message counters.
const statStripes = 16

// stripe holds per-message counters, alone on its cache lines.
type stripe struct {
	messagesReceived atomic.Uint64
	messagesSent     atomic.Uint64
	bytesSent        atomic.Uint64
	_                [128 - 24]byte
}

// stripeOf returns the stripe number for a new connection, round robin.
func (s *counters) stripeOf() uint32 { return s.nextStripe.Add(1) % statStripes }

// sum adds up one counter over the stripes.
func (s *counters) sum(f func(*stripe) *atomic.Uint64) uint64 {
	var n uint64
	for i := range s.stripes {
		n += f(&s.stripes[i]).Load()
	}
	return n
}

// Stats is a snapshot of the broker's counters and gauges.
type Stats struct {
	Connections      uint64 // connections accepted since start
	Clients          int    // clients connected now
	Sessions         int    // sessions held, online or offline
	Subscriptions    int    // (filter, session) subscriptions
	Retained         int    // retained messages
	MessagesReceived uint64 // PUBLISH packets accepted from clients
	MessagesSent     uint64 // PUBLISH packets written to clients
	MessagesDropped  uint64 // deliveries refused by a full queue or an offline QoS 0 session
	BytesSent        uint64
	StoreErrors      uint64 // failed store writes
	Parks            uint64 // times an idle connection let its reader goroutine go (Linux, plain TCP)
	Parked           int    // connections parked now: idle, with no reader goroutine
	Promotions       uint64 // raw connections that became netpoller connections to wait (Linux, plain TCP; internal/rawtcp)
}

// Stats returns a snapshot of the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	clients, sessions := len(b.mu.clients), len(b.mu.sessions)
	b.mu.Unlock()
	return Stats{
		Connections:      b.stats.connections.Load(),
		Clients:          clients,
		Sessions:         sessions,
		Subscriptions:    b.subs.Len(),
		Retained:         b.retained.Len(),
		MessagesReceived: b.stats.sum(func(s *stripe) *atomic.Uint64 { return &s.messagesReceived }),
		MessagesSent:     b.stats.sum(func(s *stripe) *atomic.Uint64 { return &s.messagesSent }),
		MessagesDropped:  b.stats.messagesDropped.Load(),
		BytesSent:        b.stats.sum(func(s *stripe) *atomic.Uint64 { return &s.bytesSent }),
		StoreErrors:      b.stats.storeErrors.Load(),
		Parks:            b.stats.parks.Load(),
		Parked:           int(b.stats.parked.Load()),
		Promotions:       b.stats.promotions.Load(),
	}
}

// ClientStats is a snapshot of one session's queue.
type ClientStats struct {
	Online   bool
	Queued   int
	Inflight int
	// Dropped counts every message not queued for the session:
	// DroppedByLimit (refused or pushed out by a queue bound: the
	// session's messages or bytes, its tenant's bound) and DroppedQoS0
	// (QoS 0 messages not kept while it was offline).
	Dropped        uint64
	DroppedByLimit uint64
	DroppedQoS0    uint64
	Subscriptions  int
	// Tenant is the tenant the session counts for; TenantKnown is false
	// for a session restored from the store whose client has not
	// connected since.
	Tenant      string
	TenantKnown bool
}

// ClientStats returns the queue statistics of the session of clientID, and
// false when the broker holds no such session.
func (b *Broker) ClientStats(clientID string) (ClientStats, bool) {
	b.mu.Lock()
	s := b.mu.sessions[clientID]
	_, online := b.mu.clients[clientID]
	b.mu.Unlock()
	if s == nil {
		return ClientStats{}, false
	}
	st := s.Stats()
	cs := ClientStats{
		Online:         online,
		Queued:         st.Queued,
		Inflight:       st.Inflight,
		Dropped:        st.Dropped + st.DroppedQoS0,
		DroppedByLimit: st.Dropped,
		DroppedQoS0:    st.DroppedQoS0,
		Subscriptions:  st.Subscriptions,
	}
	if t := s.Tenant(); t != nil {
		cs.Tenant, cs.TenantKnown = t.Name, true
	}
	return cs, true
}
