package broker

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// metricCounters are the counters the metrics endpoint and the $SYS topics
// read beyond Stats (Figures). Every one is an atomic or a map of atomics
// reached without a broker lock; a scrape reads them and nothing on the
// message path ever touches a Prometheus object.
type metricCounters struct {
	start       time.Time // New; the clock of uptime and latency stamps
	connects    atomic.Uint64
	disconnects [reasonRevoked + 1]atomic.Uint64
	refused     [256]atomic.Uint64 // CONNACK refusals by reason code
	drops       [dropReasons]atomic.Uint64
	authFail    sync.Map // authFailKey -> *atomic.Uint64
	online      sync.Map // onlineKey -> *atomic.Int64
	commitTime  histogram
	commitOps   histogram
	delivery    histogram
	// tenants holds the message counts of connections that ended, per
	// tenant (connections online are summed at the snapshot).
	tenants tenantTotals
	figs    figuresCache
	// sysStarted is set by the first StartSys.
	sysStarted atomic.Bool
}

// Drop reasons (Figures.Drops).
const (
	dropQueueFull     = iota // the session's or tenant's queue was full
	dropOfflineQoS0          // a QoS 0 message for an offline session
	dropExpired              // 5.0 message expiry passed before sending
	dropTooLarge             // larger than the client's Maximum Packet Size
	dropNotAuthorized        // a refused PUBLISH acknowledged and dropped
	dropNoShareMember        // a shared message whose group has no other member
	dropMemoryBudget         // the broker's memory budget (Options.MemoryBudget) was reached
	dropReasons
)

var dropNames = [dropReasons]string{"queue_full", "offline_qos0", "expired", "too_large", "not_authorized", "no_share_member", "memory_budget"}

var disconnectNames = [...]string{"none", "client_disconnect", "client_disconnect_with_will", "takeover", "shutdown",
	"protocol_error", "network_error", "keepalive_timeout", "not_authorized", "refused", "administrative",
	"credentials_revoked"}

// Every close reason has a name (a compile error when one is added without).
var _ = [1]struct{}{}[len(disconnectNames)-int(reasonRevoked)-1]

// latencySampleEvery: one received PUBLISH in this many (per counter
// stripe) carries its receipt time to the writers, which observe the
// publish-to-delivery latency. A power of two.
const latencySampleEvery = 64

// Histogram bucket bounds. Durations are in microseconds.
var (
	commitTimeBounds = []int64{100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000}
	commitOpsBounds  = []int64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096}
	deliveryBounds   = []int64{50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 100_000, 1_000_000, 10_000_000}
)

// histogram is a fixed-bucket histogram updated with atomics only.
type histogram struct {
	bounds []int64 // upper bounds, inclusive, ascending
	counts [16]atomic.Uint64
	sum    atomic.Int64
}

func (h *histogram) observe(v int64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(v)
}

// Histogram is a snapshot of a histogram: Counts[i] observations at most
// Bounds[i] (not cumulative), Counts[len(Bounds)] above the last bound.
type Histogram struct {
	Bounds []int64 // shared, never modified
	Counts []uint64
	Count  uint64
	Sum    int64
}

func (h *histogram) snapshot() Histogram {
	s := Histogram{Bounds: h.bounds, Counts: make([]uint64, len(h.bounds)+1)}
	for i := range s.Counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	s.Sum = h.sum.Load()
	return s
}

func (m *metricCounters) init(now time.Time) {
	m.start = now
	m.commitTime.bounds = commitTimeBounds
	m.commitOps.bounds = commitOpsBounds
	m.delivery.bounds = deliveryBounds
}

// micros is the time since the broker started in microseconds, at least
// 1 (0 marks an unsampled message).
func (m *metricCounters) micros() int64 {
	return max(int64(time.Since(m.start)/time.Microsecond), 1)
}

// onlineKey names a gauge of connected clients.
type onlineKey struct {
	listener string
	version  packet.Version
}

// authFailKey names a counter of authentication failures.
type authFailKey struct {
	method string
	code   packet.ReasonCode
}

// connMetrics are one connection's counts for the per-tenant figures.
type connMetrics struct {
	received atomic.Uint64
	sent     atomic.Uint64
	tenant   atomic.Pointer[string] // set when the connection is counted connected
	online   *atomic.Int64          // the gauge it counted itself in; reader-owned
	retired  bool                   // its counts moved to metricCounters.tenants; under Broker.mu
}

// countReceived counts an accepted PUBLISH and marks one in
// latencySampleEvery for the latency histogram. Reader only.
func (c *conn) countReceived(msg *session.Message, qos byte) {
	n := c.stats.received[qos].Add(1)
	c.stats.pubBytesIn[qos].Add(uint64(msg.Size()))
	c.m.received.Add(1)
	if n&(latencySampleEvery-1) == 0 {
		msg.SetStamp(c.b.metrics.micros())
	}
}

// countSent counts a PUBLISH written and observes the latency of a
// sampled message: not for a resend (DUP) or a message sent with the
// retain flag (a retained message sent to a new subscription was
// published long before).
func (c *conn) countSent(o *session.Outbound) {
	d := &o.Delivery
	c.stats.sent[d.QoS].Add(1)
	c.stats.pubBytesOut[d.QoS].Add(uint64(d.Msg.Size()))
	c.m.sent.Add(1)
	if st := d.Msg.Stamp(); st != 0 && !o.Dup && !d.Retain {
		c.b.metrics.delivery.observe(c.b.metrics.micros() - st)
	}
}

// countConnect counts a connection accepted with CONNACK in its
// listener's gauge. Reader only, once.
func (c *conn) countConnect() {
	m := &c.b.metrics
	m.connects.Add(1)
	k := onlineKey{listener: c.li.name, version: c.version}
	g, ok := m.online.Load(k)
	if !ok {
		g, _ = m.online.LoadOrStore(k, new(atomic.Int64))
	}
	c.m.online = g.(*atomic.Int64)
	c.m.online.Add(1)
	c.m.tenant.Store(&c.id.Tenant)
}

// countDisconnect counts the end of a counted connection. Reader only.
func (c *conn) countDisconnect(reason closeReason) {
	if c.m.online == nil {
		return
	}
	c.m.online.Add(-1)
	c.m.online = nil
	c.b.metrics.disconnects[reason].Add(1)
}

// refuseAuth is refuse for a failed authentication: counted by method and
// code.
func (c *conn) refuseAuth(pc *pendingConnect, code packet.ReasonCode, err error) error {
	c.countAuthFail(pc, code)
	return c.refuse(code, err)
}

// countAuthFail counts a failed authentication by method and code.
func (c *conn) countAuthFail(pc *pendingConnect, code packet.ReasonCode) {
	k := authFailKey{method: authMethodLabel(pc), code: code}
	m := &c.b.metrics
	n, ok := m.authFail.Load(k)
	if !ok {
		n, _ = m.authFail.LoadOrStore(k, new(atomic.Uint64))
	}
	n.(*atomic.Uint64).Add(1)
}

// authMethodLabel names how a client tried to authenticate, from a small
// fixed set: the client chooses the 5.0 method name, so an unknown one is
// "other".
func authMethodLabel(pc *pendingConnect) string {
	switch {
	case pc.method == "SCRAM-SHA-256":
		return "scram-sha-256"
	case pc.method != "":
		return "other"
	case pc.ci.HasPass:
		return "password"
	case pc.ci.CertUsername || len(pc.ci.PeerCertificates) > 0:
		return "certificate"
	case pc.ci.HasUser:
		return "username"
	}
	return "anonymous"
}

// countDrop counts n messages dropped for reason.
func (b *Broker) countDrop(reason int, n int) {
	b.stats.messagesDropped.Add(uint64(n))
	b.metrics.drops[reason].Add(uint64(n))
}

// countEnqueueDrops counts the drops of one Enqueue by the session's
// reason: a QoS 0 message refused by an offline session that does not
// queue them, the broker's memory budget (also reported by its own
// WARN line, budgetDropped), or a queue bound of the session or its
// tenant.
func (b *Broker) countEnqueueDrops(r session.Enqueued) {
	switch r.Reason {
	case session.DropOfflineQoS0:
		b.countDrop(dropOfflineQoS0, r.Dropped)
	case session.DropMemoryBudget:
		b.countDrop(dropMemoryBudget, r.Dropped)
		b.budgetDropped(r.Dropped)
	default:
		b.countDrop(dropQueueFull, r.Dropped)
	}
}

// observeCommit records one store commit of ops operations that took
// from start until now.
func (b *Broker) observeCommit(start time.Time, ops int) {
	b.metrics.commitTime.observe(int64(time.Since(start) / time.Microsecond))
	b.metrics.commitOps.observe(int64(ops))
}

// retireLocked moves the message counts of a connection that is being
// detached into its tenant's totals, so that the per-tenant figures stay
// monotonic when it goes. Needs Broker.mu (the snapshot sums connections
// that are not retired under it).
func (b *Broker) retireLocked(c *conn) {
	if c.m.retired {
		return
	}
	c.m.retired = true
	if t := c.m.tenant.Load(); t != nil {
		b.metrics.tenants.add(*t, c.m.received.Load(), c.m.sent.Load())
	}
}

// maxTenantTotals bounds the tenants whose ended connections' counts are
// kept by name; beyond it they are added to one overflow total.
const maxTenantTotals = 100_000

// tenantTotals are the message counts of ended connections per tenant.
type tenantTotals struct {
	mu struct {
		sync.Mutex
		by       map[string]*[2]uint64 // received, sent
		overflow [2]uint64
	}
}

func (t *tenantTotals) add(tenant string, received, sent uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.mu.by[tenant]
	if v == nil {
		if len(t.mu.by) >= maxTenantTotals {
			t.mu.overflow[0] += received
			t.mu.overflow[1] += sent
			return
		}
		if t.mu.by == nil {
			t.mu.by = make(map[string]*[2]uint64)
		}
		v = new([2]uint64)
		t.mu.by[tenant] = v
	}
	v[0] += received
	v[1] += sent
}

// labelOf turns a reason code's name into a metric label value.
func labelOf(s string) string {
	return strings.ReplaceAll(s, " ", "_")
}
