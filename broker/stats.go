package broker

import "sync/atomic"

// counters are the broker-wide statistics, updated without locks.
type counters struct {
	connections     atomic.Uint64
	messagesDropped atomic.Uint64
	storeErrors     atomic.Uint64
	storeRetried    atomic.Uint64 // durable writes written again (commitDurable)
	revocations     atomic.Uint64 // subscriptions revoked or narrowed (reauthorize)
	revokedMessages atomic.Uint64 // owed messages removed (reauthorize)
	parks           atomic.Uint64

	// credentialRevocations: connections closed by Reauthorize because
	// their credentials are no longer accepted (revokeCredentials).
	credentialRevocations atomic.Uint64
	// willsRefused: wills not published because the identity that set
	// them may not publish them under the policy in force, or is not
	// known (sendWill).
	willsRefused atomic.Uint64
	// The cluster's message log and journal (fabric_log.go, adopt.go).
	cluster clusterCounters

	// The counters every message updates are striped: a connection adds
	// to its own stripe (stripeOf), so readers and writers on different
	// cores do not contend for one cache line per message; a snapshot
	// sums the stripes.
	stripes    [statStripes]stripe
	nextStripe atomic.Uint32
}

// statStripes is the number of stripes of the per-message counters.
const statStripes = 16

// stripe holds per-message counters, alone on its cache lines: PUBLISH
// packets and their topic plus payload bytes by QoS, and every byte read
// and written.
type stripe struct {
	received      [3]atomic.Uint64
	sent          [3]atomic.Uint64
	pubBytesIn    [3]atomic.Uint64
	pubBytesOut   [3]atomic.Uint64
	bytesSent     atomic.Uint64
	bytesReceived atomic.Uint64
	_             [128 - 14*8]byte
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

// sumQoS adds up one counter by QoS over the stripes and the QoS levels.
func (s *counters) sumQoS(f func(*stripe) *[3]atomic.Uint64) uint64 {
	var n uint64
	for i := range s.stripes {
		for q := range f(&s.stripes[i]) {
			n += f(&s.stripes[i])[q].Load()
		}
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
	MessagesDropped  uint64 // messages dropped, for every reason (Figures.Drops)
	BytesSent        uint64
	StoreErrors      uint64 // failed store writes
	// StoreRetried counts durable writes written again because no quorum
	// acknowledged them (a cluster's journal electing a leader).
	StoreRetried uint64
	// Revocations counts subscriptions removed or narrowed (QoS lowered,
	// topics denied) because the identity holding the session may no
	// longer have them: after Reauthorize, a resume by another identity or
	// a re-authentication.
	Revocations uint64
	// RevokedMessages counts messages queued for a session (or owed to it
	// again) that were removed because its identity may no longer
	// receive them.
	RevokedMessages uint64
	Parks           uint64 // times an idle connection let its reader goroutine go (Linux, plain TCP)
	Parked          int    // connections parked now: idle, with no reader goroutine
	Promotions      uint64 // raw connections that became netpoller connections to wait (Linux, plain TCP; internal/transport)
	MemoryBudget    int64  // Options.MemoryBudget in force, bytes (0: no bound)
	MemoryHeld      int64  // bytes held for all clients: queued, in flight, in write buffers
	BudgetDrops     uint64 // messages dropped because MemoryBudget was reached (also in MessagesDropped)

	// CredentialRevocations counts connections Reauthorize closed because
	// the Authorizer (a CredentialChecker) no longer accepts the
	// credentials they connected with.
	CredentialRevocations uint64
	// WillsRefused counts wills not published because the identity that
	// set them may not publish them under the policy in force (or, for a
	// will restored from a record written before holders were stored, is
	// not known).
	WillsRefused uint64
	// Held counts refusals whose CONNACK was held (HeldRefusal).
	Held HeldStats
	// Cluster counts the work of the cluster's message log and session
	// journal on this node (zero without them).
	Cluster ClusterStats
}

// ClusterStats are the broker's counters of the cluster's message log and
// session journal.
type ClusterStats struct {
	Adopted        uint64 // sessions adopted from the journal
	AdoptFailed    uint64 // CONNECTs refused because an adoption failed
	CaughtUp       uint64 // deliveries an adoption took from the log
	LogRefused     uint64 // QoS 1/2 publishes refused because the log did not store them
	LogUnwaited    uint64 // wills and admin publishes the log did not store
	LogSkipped     uint64 // log messages the follower skipped (LogFrom jumps)
	JournalRetries uint64 // journal writes of the log's deliveries tried again
}

type clusterCounters struct {
	adopted, adoptFailed, caughtUp, logRefused, logUnwaited, logSkipped, journalRetries atomic.Uint64
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
		MessagesReceived: b.stats.sumQoS(func(s *stripe) *[3]atomic.Uint64 { return &s.received }),
		MessagesSent:     b.stats.sumQoS(func(s *stripe) *[3]atomic.Uint64 { return &s.sent }),
		MessagesDropped:  b.stats.messagesDropped.Load(),
		BytesSent:        b.stats.sum(func(s *stripe) *atomic.Uint64 { return &s.bytesSent }),
		StoreErrors:      b.stats.storeErrors.Load(),
		StoreRetried:     b.stats.storeRetried.Load(),
		Revocations:      b.stats.revocations.Load(),
		RevokedMessages:  b.stats.revokedMessages.Load(),
		Parks:            b.stats.parks.Load(),
		Parked:           int(b.parker.Parked()),
		Promotions:       b.parker.Promotions(),
		MemoryBudget:     b.budget.Max(),
		MemoryHeld:       b.budget.Held(),
		BudgetDrops:      b.budget.Dropped(),

		CredentialRevocations: b.stats.credentialRevocations.Load(),
		WillsRefused:          b.stats.willsRefused.Load(),
		Held:                  b.held.stats(),
		Cluster: ClusterStats{
			Adopted:        b.stats.cluster.adopted.Load(),
			AdoptFailed:    b.stats.cluster.adoptFailed.Load(),
			CaughtUp:       b.stats.cluster.caughtUp.Load(),
			LogRefused:     b.stats.cluster.logRefused.Load(),
			LogUnwaited:    b.stats.cluster.logUnwaited.Load(),
			LogSkipped:     b.stats.cluster.logSkipped.Load(),
			JournalRetries: b.stats.cluster.journalRetries.Load(),
		},
	}
}

// ClientStats is a snapshot of one session's queue.
type ClientStats struct {
	Online   bool
	Queued   int
	Inflight int
	// Dropped counts every message not queued for the session:
	// DroppedByLimit (refused or pushed out by a queue bound: the
	// session's messages or bytes, its tenant's bound, the broker's memory
	// budget) and DroppedQoS0
	// (QoS 0 messages not kept while it was offline).
	Dropped        uint64
	DroppedByLimit uint64
	DroppedQoS0    uint64
	Subscriptions  int
	// Tenant is the tenant the session belongs to and counts for ("" for
	// none), from its session key: known for a session restored from the
	// store too.
	Tenant string
}

// ClientStats returns the queue statistics of the session of clientID in
// tenant "" (clients whose Identity names no tenant, as with AllowAll), and
// false when the broker holds no such session. ClientStatsIn names a
// tenant.
func (b *Broker) ClientStats(clientID string) (ClientStats, bool) {
	return b.ClientStatsIn("", clientID)
}

// ClientStatsIn returns the queue statistics of the session of clientID in
// tenant (client ids are a namespace per tenant), and false when the
// broker holds no such session.
func (b *Broker) ClientStatsIn(tenant, clientID string) (ClientStats, bool) {
	key := SessionKey(tenant, clientID)
	b.mu.Lock()
	s := b.mu.sessions[key]
	_, online := b.mu.clients[key]
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
		Tenant:         tenant,
	}
	return cs, true
}
