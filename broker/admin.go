package broker

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"strings"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// This file is what an administrator sees of a running broker and may do
// to it (internal/admin serves it over HTTP): sessions and their
// connections, kicking a client, discarding a session. Every session is
// named by tenant and client id together (SessionKey). The methods are
// safe for concurrent use; none holds Broker.mu while it reads a session
// (Session.mu) or writes to the store.

// SessionInfo describes one session, online or offline.
type SessionInfo struct {
	Tenant   string
	ClientID string
	// Online reports a connection holding the session now; the
	// connection's fields below are zero otherwise.
	Online     bool
	Version    packet.Version
	RemoteAddr string
	Listener   string
	KeepAlive  time.Duration // as the client asked; 0 for none
	// Persistent: the session outlives its connection (3.x clean session
	// 0, 5.0 session expiry above 0).
	Persistent bool
	// ExpiresAt is when an offline 5.0 session's expiry interval runs
	// out; zero when online or never.
	ExpiresAt time.Time
	// Queue: messages waiting (retained backlog included) and their bytes,
	// QoS 1/2 messages sent and not acknowledged, messages dropped by the
	// overflow policy or while offline.
	Queued        int
	QueuedBytes   int
	Inflight      int
	Dropped       uint64
	Subscriptions int
	// Subs lists the subscriptions, sorted by filter; filled by Session
	// only.
	Subs []SubscriptionInfo
}

// SubscriptionInfo is one subscription of one session.
type SubscriptionInfo struct {
	Tenant            string
	ClientID          string
	Filter            string // as subscribed, $share/group/ prefix included
	QoS               byte   // granted
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubID             uint32 // 5.0 subscription identifier, 0 for none
}

// SessionQuery selects sessions for Sessions and Subscriptions. Results
// come in the order of (tenant, client id), starting after the After pair
// when HasAfter is set, at most Limit of them.
type SessionQuery struct {
	// Tenant restricts the results to one tenant unless AnyTenant is set.
	Tenant    string
	AnyTenant bool
	// ClientPrefix keeps the client ids starting with it ("" keeps all).
	ClientPrefix string
	// OnlineOnly keeps the sessions with a connection.
	OnlineOnly bool
	// After names the last session of the previous page.
	HasAfter                 bool
	AfterTenant, AfterClient string
	// Limit bounds the page; at least 1.
	Limit int
}

// sessionRef is a session found under Broker.mu with what the report
// needs of its connection, read there.
type sessionRef struct {
	tenant, client string
	s              *session.Session
	info           SessionInfo // the connection's fields and expiry
}

func lessKey(at, ac, bt, bc string) bool {
	if c := cmp.Compare(at, bt); c != 0 {
		return c < 0
	}
	return ac < bc
}

// refHeap keeps the smallest keys seen: a max-heap by key whose root is
// the largest, dropped when a smaller one comes and the heap is full.
type refHeap []sessionRef

func (h refHeap) Len() int { return len(h) }
func (h refHeap) Less(i, j int) bool {
	return lessKey(h[j].tenant, h[j].client, h[i].tenant, h[i].client)
}
func (h refHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *refHeap) Push(x any)   { *h = append(*h, x.(sessionRef)) }
func (h *refHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// pageSessions returns the sessions q selects, sorted, at most q.Limit+1
// of them (one more than a page says whether more follow). It walks every
// session under Broker.mu once, keeping only the page in a bounded heap:
// the lock is held for a map walk, with nothing allocated per session.
func (b *Broker) pageSessions(q SessionQuery) []sessionRef {
	n := max(q.Limit, 1) + 1
	h := make(refHeap, 0, n)
	b.mu.Lock()
	for key, s := range b.mu.sessions {
		tenant, client := SplitSessionKey(key)
		if !q.AnyTenant && tenant != q.Tenant {
			continue
		}
		if !strings.HasPrefix(client, q.ClientPrefix) {
			continue
		}
		if q.HasAfter && !lessKey(q.AfterTenant, q.AfterClient, tenant, client) {
			continue
		}
		c := b.mu.clients[key]
		if q.OnlineOnly && c == nil {
			continue
		}
		if len(h) == n {
			if !lessKey(tenant, client, h[0].tenant, h[0].client) {
				continue
			}
			heap.Pop(&h)
		}
		heap.Push(&h, b.refLocked(key, s, c))
	}
	b.mu.Unlock()
	out := []sessionRef(h)
	// Sorted ascending: the heap holds them in heap order.
	sortRefs(out)
	return out
}

func sortRefs(rs []sessionRef) {
	for i := 1; i < len(rs); i++ { // at most a page: insertion sort will do
		for j := i; j > 0 && lessKey(rs[j].tenant, rs[j].client, rs[j-1].tenant, rs[j-1].client); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// refLocked describes session s of key and its connection c (nil when
// offline); b.mu is held. The connection's fields read here were set
// before it was registered in b.mu.clients (attach), under b.mu.
func (b *Broker) refLocked(key string, s *session.Session, c *conn) sessionRef {
	tenant, client := SplitSessionKey(key)
	r := sessionRef{tenant: tenant, client: client, s: s}
	// An offline session the broker holds outlives its connections: clean
	// ones end with theirs.
	r.info = SessionInfo{Tenant: tenant, ClientID: client, Persistent: true}
	if c != nil {
		r.info.Online = true
		r.info.Version = c.version
		r.info.RemoteAddr = c.remoteString()
		if c.li != nil {
			r.info.Listener = c.li.name
		}
		r.info.KeepAlive = c.readWait * 2 / 3
		r.info.Persistent = !c.clean
	} else if b.mu.expiries[s] != nil {
		r.info.ExpiresAt = s.ExpiresAt()
	}
	return r
}

// describe fills the queue figures of a reference, outside Broker.mu.
func describe(r sessionRef) SessionInfo {
	st := r.s.Stats()
	info := r.info
	info.Queued, info.QueuedBytes, info.Inflight = st.Queued, st.QueuedBytes, st.Inflight
	info.Dropped = st.Dropped + st.DroppedQoS0
	info.Subscriptions = st.Subscriptions
	return info
}

// Sessions returns a page of the sessions q selects, in (tenant, client
// id) order, and whether more follow.
func (b *Broker) Sessions(q SessionQuery) (page []SessionInfo, more bool) {
	refs := b.pageSessions(q)
	if len(refs) > q.Limit {
		refs, more = refs[:q.Limit], true
	}
	page = make([]SessionInfo, len(refs))
	for i, r := range refs {
		page[i] = describe(r)
	}
	return page, more
}

// Session returns the session of clientID in tenant with its
// subscriptions, and false when the broker holds none.
func (b *Broker) Session(tenant, clientID string) (SessionInfo, bool) {
	key := SessionKey(tenant, clientID)
	b.mu.Lock()
	s := b.mu.sessions[key]
	if s == nil {
		b.mu.Unlock()
		return SessionInfo{}, false
	}
	r := b.refLocked(key, s, b.mu.clients[key])
	b.mu.Unlock()
	info := describe(r)
	info.Subs = subscriptionsOf(r)
	return info, true
}

// subscriptionsOf lists a session's subscriptions sorted by filter.
func subscriptionsOf(r sessionRef) []SubscriptionInfo {
	subs := r.s.Subscriptions()
	out := make([]SubscriptionInfo, len(subs))
	for i, s := range subs {
		out[i] = SubscriptionInfo{Tenant: r.tenant, ClientID: r.client, Filter: s.Filter, QoS: s.QoS, NoLocal: s.NoLocal,
			RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling, SubID: s.SubID}
	}
	sortSubs(out)
	return out
}

func sortSubs(s []SubscriptionInfo) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && subLess(&s[j], &s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func subLess(a, b *SubscriptionInfo) bool {
	if a.Tenant != b.Tenant || a.ClientID != b.ClientID {
		return lessKey(a.Tenant, a.ClientID, b.Tenant, b.ClientID)
	}
	return a.Filter < b.Filter
}

// Kick closes the connection of clientID in tenant: a 5.0 client is sent
// DISCONNECT 0x98 (Administrative action) first [MQTT-3.14.2-1], a 3.x
// client is closed. The will, if any, is published, as for any close
// that is not the client's DISCONNECT [MQTT-3.1.2-8]; the session stays,
// or ends as its connection's settings say. It reports false when no
// such client is connected.
func (b *Broker) Kick(tenant, clientID string) bool {
	b.mu.Lock()
	c := b.mu.clients[SessionKey(tenant, clientID)]
	b.mu.Unlock()
	if c == nil {
		return false
	}
	b.log.Info("client kicked by an administrator", "tenant", tenant, "client", clientID, "remote", c.remoteString())
	c.closeWith(packet.AdministrativeAction, reasonAdministrative)
	return true
}

// ErrSessionBusy is returned by DeleteSession when the client connected
// again while its session was being discarded.
var ErrSessionBusy = errors.New("broker: the client reconnected; session not deleted")

// DeleteSession discards the session of clientID in tenant, from memory
// and from the store: an online client is kicked first (Kick) and its
// connection's end awaited (bounded by ctx). A delayed will waiting for
// the session to end is published now [MQTT-3.1.3-9]. It reports false
// when the broker holds no such session.
func (b *Broker) DeleteSession(ctx context.Context, tenant, clientID string) (bool, error) {
	key := SessionKey(tenant, clientID)
	b.mu.Lock()
	s, c := b.mu.sessions[key], b.mu.clients[key]
	b.mu.Unlock()
	if s == nil {
		return false, nil
	}
	if c != nil {
		b.log.Info("client kicked by an administrator", "tenant", tenant, "client", clientID, "remote", c.remoteString())
		c.closeWith(packet.AdministrativeAction, reasonAdministrative)
		select {
		case <-c.finishedChan():
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
	b.mu.Lock()
	if b.mu.clients[key] != nil {
		b.mu.Unlock()
		return true, ErrSessionBusy
	}
	s = b.mu.sessions[key]
	if s == nil { // a clean session ended with its connection
		b.mu.Unlock()
		return true, nil
	}
	if t := b.mu.expiries[s]; t != nil {
		t.Stop()
		delete(b.mu.expiries, s)
	}
	b.dropSessionLocked(s)
	w := b.mu.wills[key]
	delete(b.mu.wills, key)
	b.mu.Unlock()
	b.syncInterest()
	if b.fabric != nil {
		b.fabric.Release(key)
	}
	b.log.Info("session deleted by an administrator", "tenant", tenant, "client", clientID)
	if w != nil {
		w.timer.Stop() // if it fired, its func finds the map changed and sends nothing
		b.sendWill(w.msg, w.id)
	}
	if err := b.commitOne(Op{Kind: OpDeleteSession, ClientID: key}, true); err != nil {
		return true, err
	}
	return true, nil
}

// Serving returns the number of listeners Serve is accepting on; 0 after
// Shutdown. A readiness probe asks it.
func (b *Broker) Serving() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shutdown.Load() {
		return 0
	}
	return len(b.mu.listeners)
}
