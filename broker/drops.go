package broker

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// Messages dropped by a queue bound (a session's messages or bytes, its
// tenant's shared bound) are counted in the session (ClientStats), in its
// tenant (TenantStats) and broker-wide (Stats.MessagesDropped), and
// reported in the log: dropLog gathers the sessions that dropped and, one
// DropLogInterval after the first drop, writes one WARN line per session
// with what it dropped in that time (at most dropLogLines lines, then one
// line for the rest). The timer runs only while drops wait to be
// reported: a broker that drops nothing has no periodic wake-up.

// dropLogLines bounds the lines of one report; the sessions that dropped
// the most are named, the others summed in one more line.
const dropLogLines = 20

// dropLog holds the sessions with drops to report. Its mutex is a leaf; it
// is taken once per session per report, not per drop (Enqueued.Report).
type dropLog struct {
	mu struct {
		sync.Mutex
		pending []*session.Session
		since   time.Time   // the first drop of the pending report
		timer   *time.Timer // armed when pending becomes non-empty
		closed  bool        // Shutdown reported for the last time
	}
	fired sync.WaitGroup // reports the timer started (stopDropLog waits for them)
}

// noteDrops has s's drops reported: called for the first drop by a queue
// bound since its last report.
func (b *Broker) noteDrops(s *session.Session) {
	d := &b.drops
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.pending = append(d.mu.pending, s)
	if len(d.mu.pending) > 1 || d.mu.closed {
		return // armed already, or Shutdown reports
	}
	d.mu.since = b.opts().Now()
	if d.mu.timer == nil {
		d.mu.timer = time.AfterFunc(b.opts().DropLogInterval, b.dropTimerFired)
	} else {
		d.mu.timer.Reset(b.opts().DropLogInterval)
	}
}

func (b *Broker) dropTimerFired() {
	b.drops.mu.Lock()
	if b.drops.mu.closed {
		b.drops.mu.Unlock()
		return
	}
	b.drops.fired.Add(1)
	b.drops.mu.Unlock()
	defer b.drops.fired.Done()
	b.reportDrops()
}

// stopDropLog disarms the report timer for good and waits for a report it
// started (Shutdown, before its final reportDrops).
func (b *Broker) stopDropLog() {
	b.drops.mu.Lock()
	b.drops.mu.closed = true
	if b.drops.mu.timer != nil {
		b.drops.mu.timer.Stop()
	}
	b.drops.mu.Unlock()
	b.drops.fired.Wait()
}

// droppedBy is one session's part of a report.
type droppedBy struct {
	s      *session.Session
	n      uint64
	reason session.DropReason
}

// reportDrops logs what the pending sessions dropped since their last
// report, most first.
func (b *Broker) reportDrops() {
	b.drops.mu.Lock()
	pending, since := b.drops.mu.pending, b.drops.mu.since
	b.drops.mu.pending = nil
	b.drops.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	o := b.opts()
	window := o.Now().Sub(since)
	if window < 10*time.Second {
		window = window.Round(100 * time.Millisecond)
	} else {
		window = window.Round(time.Second)
	}
	rows := make([]droppedBy, 0, len(pending))
	for _, s := range pending {
		if n, reason := s.TakeDropReport(); n > 0 {
			rows = append(rows, droppedBy{s: s, n: n, reason: reason})
		}
	}
	slices.SortFunc(rows, func(x, y droppedBy) int { return cmp.Compare(y.n, x.n) })
	for i, r := range rows {
		if i == dropLogLines {
			var rest uint64
			for _, r := range rows[i:] {
				rest += r.n
			}
			b.log.Warn(fmt.Sprintf("%d more clients dropped %s messages in %v", len(rows)-i, thousands(rest), window),
				"clients", len(rows)-i, "dropped", rest)
			break
		}
		name, client := SplitSessionKey(r.s.ID)
		tenant := "tenant " + name
		if name == "" {
			tenant = "no tenant"
		}
		lim := r.s.Limits()
		policy := PolicyDropNew
		if lim.Policy == session.DropOldest {
			policy = PolicyDropOldest
		}
		b.log.Warn(fmt.Sprintf("client %s (%s): dropped %s messages in %v, %s, policy %s",
			client, tenant, thousands(r.n), window, dropBound(r.reason, lim), policy),
			"tenant", name, "client", client, "dropped", r.n, "reason", r.reason.String(), "policy", policy)
	}
}

// dropBound describes the bound that dropped: "queue full (50,000
// messages)".
func dropBound(r session.DropReason, lim session.Limits) string {
	switch r {
	case session.DropQueueFull:
		return fmt.Sprintf("%v (%s messages)", r, thousands(uint64(lim.MaxMessages)))
	case session.DropQueueBytes:
		return fmt.Sprintf("%v (%s bytes)", r, thousands(uint64(lim.MaxBytes)))
	case session.DropTenantQuota:
		if q := lim.Quota; q != nil {
			return fmt.Sprintf("%v (%s messages, %s bytes)", r, thousands(uint64(q.MaxMessages)), thousands(uint64(q.MaxBytes)))
		}
	case session.DropMemoryBudget:
		if b := lim.Budget; b != nil {
			return fmt.Sprintf("%v (%s bytes)", r, thousands(uint64(b.Max())))
		}
	}
	return r.String()
}

// thousands formats n with commas: 12,340.
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// tenant returns the counters of tenant name, made at its first use.
// Tenants come from authenticated identities and from the session keys of
// the store only.
func (b *Broker) tenant(name string) *session.Tenant {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.mu.tenants[name]
	if t == nil {
		t = session.NewTenant(name)
		b.mu.tenants[name] = t
	}
	return t
}

// setTenant makes sess count against its tenant: the shared queue bound,
// when one is configured, and the drop counters.
func (b *Broker) setTenant(sess *session.Session, tenant string) {
	sess.SetQuota(b.tenantQuota(tenant))
	sess.SetTenant(b.tenant(tenant))
}

// TenantStats is a snapshot of one tenant's counters.
type TenantStats struct {
	// Dropped counts the messages its sessions' queues dropped by a queue
	// bound (messages, bytes, the tenant's shared bound).
	Dropped uint64
	// DroppedQoS0 counts the QoS 0 messages not queued for its offline
	// sessions (Options.QueueQoS0Offline off).
	DroppedQoS0 uint64
	// Queued and QueuedBytes are what its sessions hold queued, when a
	// tenant bound is configured (TenantQueueMessages, TenantQueueBytes);
	// 0 otherwise.
	Queued, QueuedBytes int64
}

// TenantStats returns the counters of tenant ("" for clients in no
// tenant), and false when the broker has held no session of that tenant
// since it started (sessions restored from the store count).
func (b *Broker) TenantStats(tenant string) (TenantStats, bool) {
	b.mu.Lock()
	t, q := b.mu.tenants[tenant], b.mu.quotas[tenant]
	b.mu.Unlock()
	if t == nil {
		return TenantStats{}, false
	}
	var st TenantStats
	st.Dropped, st.DroppedQoS0 = t.Dropped()
	if q != nil {
		st.Queued, st.QueuedBytes = q.Queued()
	}
	return st, true
}
