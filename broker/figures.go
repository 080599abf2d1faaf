package broker

import (
	"sort"
	"sync"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// Figures is a snapshot of what the broker counts, for the metrics
// endpoint (internal/metrics) and the $SYS topics. Its slices are the
// caller's; Histogram.Bounds are shared and never modified.
type Figures struct {
	Stats
	Uptime time.Duration

	Connects     uint64            // CONNECTs accepted (CONNACK 0)
	Disconnects  map[string]uint64 // connections that had their CONNACK, ended, by reason
	Refused      map[string]uint64 // CONNACK refusals by reason code name ("not_authorized", ...)
	AuthFailures []AuthFailure
	Online       []OnlineCount // connected clients by listener and protocol version

	ReceivedByQoS     [3]uint64 // PUBLISH packets accepted from clients
	SentByQoS         [3]uint64 // PUBLISH packets written to clients
	PublishBytesIn    [3]uint64 // their topic and payload bytes
	PublishBytesOut   [3]uint64
	BytesReceived     uint64            // every byte of every packet read
	Drops             map[string]uint64 // messages dropped by reason
	RetainedBytes     int               // topic and payload bytes of the retained messages
	SessionsOnline    int
	SessionsOffline   int
	Queued            int // messages queued for all sessions (retained backlogs included)
	QueuedBytes       int
	Inflight          int       // QoS 1/2 messages sent and not yet acknowledged
	CommitSeconds     Histogram // store commits: microseconds
	CommitOps         Histogram // store commits: operations per commit
	DeliveryLatency   Histogram // sampled publish-to-delivery latency: microseconds
	StoreBytes        int64     // the store's disk usage; -1 when unknown (no store, or a store without DiskUsage)
	Tenants           []TenantFigures
	TenantsOverflowed TenantFigures // counts of ended connections of tenants past maxTenantTotals
}

// AuthFailure counts failed authentications of one method with one code.
type AuthFailure struct {
	Method string // "password", "scram-sha-256", "certificate", "anonymous", "username", "other"
	Reason string // the CONNACK reason code name
	N      uint64
}

// OnlineCount is the number of clients connected through one listener
// with one protocol version.
type OnlineCount struct {
	Listener string
	Version  string // "3.1", "3.1.1", "5.0"
	N        int64
}

// TenantFigures are the main figures of one tenant.
type TenantFigures struct {
	Tenant    string
	Connected int
	Sessions  int
	Received  uint64 // PUBLISH packets accepted from the tenant's clients
	Sent      uint64 // PUBLISH packets written to them
	Queued    int
	Dropped   uint64 // messages dropped by the tenant's sessions held now
}

// DiskUser is implemented by a Store that can tell its disk usage.
type DiskUser interface {
	DiskUsage() (int64, error)
}

// figuresMaxAge is how long a snapshot is reused: a scrape storm costs
// at most one walk over the sessions per interval.
const figuresMaxAge = time.Second

// figuresCache keeps the last snapshot. Its lock is held while a snapshot
// is made, so concurrent readers wait for one walk instead of each making
// their own (lock order: figuresCache.mu -> Broker.mu).
type figuresCache struct {
	mu struct {
		sync.Mutex
		at  time.Time
		fig *Figures
	}
}

// Figures returns a snapshot of the broker's counters, at most a second
// old. Summing the sessions' queues costs a walk over every session (its
// lock taken briefly, one at a time, with no broker lock held); the
// broker-wide lock is held only to copy the list of sessions and to read
// the connections' counters.
func (b *Broker) Figures() Figures {
	fc := &b.metrics.figs
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.mu.fig != nil && time.Since(fc.mu.at) < figuresMaxAge {
		return copyFigures(fc.mu.fig)
	}
	f := b.figures()
	fc.mu.fig, fc.mu.at = &f, time.Now()
	return copyFigures(&f)
}

// copyFigures copies the parts of f a caller could modify.
func copyFigures(f *Figures) Figures {
	g := *f
	g.Disconnects = copyMap(f.Disconnects)
	g.Refused = copyMap(f.Refused)
	g.Drops = copyMap(f.Drops)
	g.AuthFailures = append([]AuthFailure(nil), f.AuthFailures...)
	g.Online = append([]OnlineCount(nil), f.Online...)
	g.Tenants = append([]TenantFigures(nil), f.Tenants...)
	g.CommitSeconds.Counts = append([]uint64(nil), f.CommitSeconds.Counts...)
	g.CommitOps.Counts = append([]uint64(nil), f.CommitOps.Counts...)
	g.DeliveryLatency.Counts = append([]uint64(nil), f.DeliveryLatency.Counts...)
	return g
}

func copyMap(m map[string]uint64) map[string]uint64 {
	c := make(map[string]uint64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

type figureRef struct {
	s      *session.Session
	online bool
}

func (b *Broker) figures() Figures {
	m := &b.metrics
	f := Figures{Stats: b.Stats(), Uptime: time.Since(m.start), StoreBytes: -1}
	f.Connects = m.connects.Load()
	f.Disconnects = make(map[string]uint64)
	for r := range m.disconnects {
		if n := m.disconnects[r].Load(); n > 0 {
			f.Disconnects[disconnectNames[r]] = n
		}
	}
	f.Refused = make(map[string]uint64)
	for code := range m.refused {
		if n := m.refused[code].Load(); n > 0 {
			f.Refused[labelOf(packet.ReasonCode(code).String())] = n
		}
	}
	m.authFail.Range(func(k, v any) bool {
		key := k.(authFailKey)
		f.AuthFailures = append(f.AuthFailures, AuthFailure{Method: key.method, Reason: labelOf(key.code.String()), N: v.(interface{ Load() uint64 }).Load()})
		return true
	})
	sort.Slice(f.AuthFailures, func(i, j int) bool {
		a, c := f.AuthFailures[i], f.AuthFailures[j]
		return a.Method < c.Method || a.Method == c.Method && a.Reason < c.Reason
	})
	m.online.Range(func(k, v any) bool {
		key := k.(onlineKey)
		f.Online = append(f.Online, OnlineCount{Listener: key.listener, Version: key.version.String(), N: v.(interface{ Load() int64 }).Load()})
		return true
	})
	sort.Slice(f.Online, func(i, j int) bool {
		a, c := f.Online[i], f.Online[j]
		return a.Listener < c.Listener || a.Listener == c.Listener && a.Version < c.Version
	})
	for i := range b.stats.stripes {
		s := &b.stats.stripes[i]
		for q := range 3 {
			f.ReceivedByQoS[q] += s.received[q].Load()
			f.SentByQoS[q] += s.sent[q].Load()
			f.PublishBytesIn[q] += s.pubBytesIn[q].Load()
			f.PublishBytesOut[q] += s.pubBytesOut[q].Load()
		}
		f.BytesReceived += s.bytesReceived.Load()
	}
	f.Drops = make(map[string]uint64, dropReasons)
	for r := range m.drops {
		f.Drops[dropNames[r]] = m.drops[r].Load()
	}
	f.RetainedBytes = b.retained.Bytes()
	f.CommitSeconds = m.commitTime.snapshot()
	f.CommitOps = m.commitOps.snapshot()
	f.DeliveryLatency = m.delivery.snapshot()
	if du, ok := b.store.(DiskUser); ok {
		if n, err := du.DiskUsage(); err == nil {
			f.StoreBytes = n
		}
	}
	b.sessionFigures(&f)
	return f
}

// sessionFigures fills in the figures summed over sessions and
// connections: sessions online and offline, queues, inflight and the
// per-tenant figures.
func (b *Broker) sessionFigures(f *Figures) {
	tenants := make(map[string]*TenantFigures)
	tenant := func(name string) *TenantFigures {
		t := tenants[name]
		if t == nil {
			t = &TenantFigures{Tenant: name}
			tenants[name] = t
		}
		return t
	}
	b.mu.Lock()
	refs := make([]figureRef, 0, len(b.mu.sessions))
	for key, s := range b.mu.sessions {
		_, online := b.mu.clients[key]
		refs = append(refs, figureRef{s: s, online: online})
	}
	// Connections not yet retired: their counts are not in the totals.
	for c := b.mu.conns.head; c != nil; c = c.lnext {
		if c.m.retired {
			continue
		}
		if name := c.m.tenant.Load(); name != nil {
			t := tenant(*name)
			t.Received += c.m.received.Load()
			t.Sent += c.m.sent.Load()
		}
	}
	b.mu.Unlock()

	tt := &b.metrics.tenants
	tt.mu.Lock()
	for name, v := range tt.mu.by {
		t := tenant(name)
		t.Received += v[0]
		t.Sent += v[1]
	}
	f.TenantsOverflowed = TenantFigures{Tenant: "", Received: tt.mu.overflow[0], Sent: tt.mu.overflow[1]}
	tt.mu.Unlock()

	for _, r := range refs {
		st := r.s.Stats()
		name, _ := SplitSessionKey(r.s.ID)
		t := tenant(name)
		t.Sessions++
		if r.online {
			f.SessionsOnline++
			t.Connected++
		} else {
			f.SessionsOffline++
		}
		f.Queued += st.Queued
		f.QueuedBytes += st.QueuedBytes
		f.Inflight += st.Inflight
		t.Queued += st.Queued
		t.Dropped += st.Dropped + st.DroppedQoS0
	}
	f.Tenants = make([]TenantFigures, 0, len(tenants))
	for _, t := range tenants {
		f.Tenants = append(f.Tenants, *t)
	}
	sort.Slice(f.Tenants, func(i, j int) bool { return f.Tenants[i].Tenant < f.Tenants[j].Tenant })
}
