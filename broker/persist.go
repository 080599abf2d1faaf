package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// routing collects, while one message is routed, the deliveries to
// persistent sessions that must be written to the store before they are
// queued, and the store removals the routing caused (dropped deliveries).
type routing struct {
	staged  []staged
	batch   Batch
	cleanup Batch
	seen    map[*session.Session]struct{} // distinctPlain's scratch
	from    *conn                         // the publishing reader, while route runs (see route)
	queued  int                           // deliveries queued (see enqueue)
	refused int                           // deliveries a queue bound refused
}

// distinctPlain reports whether ents are plain subscriptions of distinct
// sessions, which need no merging.
func (rt *routing) distinctPlain(ents []entry) bool {
	if rt.seen == nil {
		rt.seen = make(map[*session.Session]struct{}, len(ents))
	}
	defer clear(rt.seen)
	for _, e := range ents {
		if e.Key.group != "" {
			return false
		}
		if _, dup := rt.seen[e.Key.s]; dup {
			return false
		}
		rt.seen[e.Key.s] = struct{}{}
	}
	return true
}

type staged struct {
	s *session.Session
	d session.Delivery
}

var routingPool = sync.Pool{New: func() any { return new(routing) }}

func (rt *routing) release() {
	clear(rt.staged)
	rt.staged = rt.staged[:0]
	rt.batch.Reset()
	rt.cleanup.Reset()
	rt.queued, rt.refused = 0, 0
	routingPool.Put(rt)
}

// finishRouting writes the staged deliveries with extra in one commit,
// then queues them; it also commits the routing's removals. Without a
// store it only queues.
func (b *Broker) finishRouting(rt *routing, extra *Batch, durable bool) error {
	if len(rt.staged) > 0 || (extra != nil && extra.Len() > 0) {
		if extra != nil {
			rt.batch.Ops = append(rt.batch.Ops, extra.Ops...)
		}
		rt.appendStaged(&rt.batch)
		if err := b.commit(&rt.batch, durable); err != nil {
			return err
		}
	}
	b.queueStaged(rt)
	return nil
}

// appendStaged adds the store writes of the staged deliveries to batch.
func (rt *routing) appendStaged(batch *Batch) {
	for i := range rt.staged {
		st := &rt.staged[i]
		batch.Add(Op{Kind: OpEnqueue, ClientID: st.s.ID, Delivery: storedDelivery(&st.d)})
	}
}

// queueStaged queues the staged deliveries once their write returned, and
// commits the removals the routing caused.
func (b *Broker) queueStaged(rt *routing) {
	for _, st := range rt.staged {
		b.enqueue(rt, st.s, st.d)
	}
	if rt.cleanup.Len() > 0 {
		// A removal that fails to be written is logged and counted by
		// commit; the delivery comes back at restart, as at-least-once allows.
		_ = b.commit(&rt.cleanup, false)
	}
}

// errStore marks a failed store write.
var errStore = fmt.Errorf("broker: store write failed")

// commit writes batch to the store, if there is one, after the lazy
// operations waiting (they were made before batch, so they go first).
func (b *Broker) commit(batch *Batch, durable bool) error {
	if b.store == nil {
		return nil
	}
	if lazy := b.takeLazy(); lazy != nil {
		lazy.Ops = append(lazy.Ops, batch.Ops...)
		batch = lazy
	}
	if batch.Len() == 0 {
		return nil
	}
	defer b.observeCommit(time.Now(), batch.Len())
	if err := b.store.Commit(batch, durable); err != nil {
		b.stats.storeErrors.Add(1)
		if log, since := b.storeLog.allow(time.Now()); log {
			b.log.Error("store write failed", "err", err, "ops", batch.Len(), "durable", durable, "failed_since_last_line", since)
		}
		return fmt.Errorf("%w: %w", errStore, err)
	}
	return nil
}

// storeErrLogEvery is how often a failing store is logged: an unavailable
// store (a full disk) fails every write until it recovers, and each
// refused publish must not write a line. Stats.StoreErrors counts them
// all.
const storeErrLogEvery = 10 * time.Second

// storeErrLog limits the log lines of failed store writes to one per
// storeErrLogEvery. Its mutex is a leaf.
type storeErrLog struct {
	mu struct {
		sync.Mutex
		last       time.Time
		suppressed int
	}
}

// allow reports whether a failed write at now is logged, and how many
// failed since the last line.
func (l *storeErrLog) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.mu.last.IsZero() && now.Sub(l.mu.last) < storeErrLogEvery {
		l.mu.suppressed++
		return false, 0
	}
	n := l.mu.suppressed
	l.mu.last, l.mu.suppressed = now, 0
	return true, n
}

// lazyFlushAt is how many lazy operations make the next one flush them.
const lazyFlushAt = 1024

// lazyOps holds store operations whose loss in a crash costs only a
// resend: removals of acknowledged deliveries, released inbound QoS 2 ids,
// packet ids of sent QoS 1 deliveries. They ride along with the next
// commit, or are flushed lazyInterval after the first of them came (a
// timer armed only while some wait: an idle broker has no periodic
// wake-up), at Shutdown, or when lazyFlushAt of them wait. Guarded by its
// own mutex, a leaf.
type lazyOps struct {
	mu     sync.Mutex
	batch  *Batch
	timer  *time.Timer    // flushes; armed when batch goes from nil to non-nil
	closed bool           // Shutdown flushed for the last time: no timer is armed again
	fired  sync.WaitGroup // timer flushes under way (stopLazy waits for them)
}

// lazyInterval bounds how long lazy store operations wait for a commit.
const lazyInterval = 100 * time.Millisecond

// lazy queues op for a later commit (see lazyOps).
func (b *Broker) lazy(op Op) {
	if b.store == nil {
		return
	}
	b.lazyOps.mu.Lock()
	if b.lazyOps.batch == nil {
		b.lazyOps.batch = new(Batch)
		switch {
		case b.lazyOps.closed: // the final flush comes from Shutdown
		case b.lazyOps.timer == nil:
			b.lazyOps.timer = time.AfterFunc(lazyInterval, b.lazyTimerFired)
		default:
			// Stopped or fired (a commit may have taken the batch before it
			// fired: it then finds nothing, or a newer batch, which is at
			// worst flushed early).
			b.lazyOps.timer.Reset(lazyInterval)
		}
	}
	b.lazyOps.batch.Add(op)
	full := b.lazyOps.batch.Len() >= lazyFlushAt
	b.lazyOps.mu.Unlock()
	if full {
		b.flushLazy()
	}
}

// takeLazy returns the waiting lazy operations, or nil.
func (b *Broker) takeLazy() *Batch {
	b.lazyOps.mu.Lock()
	defer b.lazyOps.mu.Unlock()
	l := b.lazyOps.batch
	b.lazyOps.batch = nil
	return l
}

// lazyTimerFired flushes, unless Shutdown has flushed for the last time.
func (b *Broker) lazyTimerFired() {
	b.lazyOps.mu.Lock()
	if b.lazyOps.closed {
		b.lazyOps.mu.Unlock()
		return
	}
	b.lazyOps.fired.Add(1)
	b.lazyOps.mu.Unlock()
	defer b.lazyOps.fired.Done()
	b.flushLazy()
}

// stopLazy disarms the flush timer for good and waits for a flush it
// started (Shutdown, before its final flushLazy: the store may be closed
// once Shutdown returns).
func (b *Broker) stopLazy() {
	b.lazyOps.mu.Lock()
	b.lazyOps.closed = true
	if b.lazyOps.timer != nil {
		b.lazyOps.timer.Stop()
	}
	b.lazyOps.mu.Unlock()
	b.lazyOps.fired.Wait()
}

// flushLazy writes the waiting lazy operations, not synced.
func (b *Broker) flushLazy() {
	var empty Batch
	// A failed write is logged and counted by commit; the operations only
	// spare resends after a restart.
	_ = b.commit(&empty, false)
}

// commitOne writes a single operation.
func (b *Broker) commitOne(op Op, durable bool) error {
	if b.store == nil {
		return nil
	}
	var batch Batch
	batch.Add(op)
	return b.commit(&batch, durable)
}

func storedMessage(m *session.Message) StoredMessage {
	return StoredMessage{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		Properties: m.Properties, Expiry: m.Expiry, Origin: m.Origin}
}

func storedDelivery(d *session.Delivery) *StoredDelivery {
	return &StoredDelivery{Seq: d.Seq, Msg: storedMessage(d.Msg), QoS: d.QoS, Retain: d.Retain,
		SubIDs: d.SubIDs, Share: d.Share, ShareFilter: d.ShareFilter}
}

func restoredMessage(m *StoredMessage) *session.Message {
	return &session.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		Properties: m.Properties, Expiry: m.Expiry, Origin: m.Origin}
}

func storedSubscription(s session.Subscription) *StoredSubscription {
	return &StoredSubscription{Filter: s.Filter, QoS: s.QoS, NoLocal: s.NoLocal,
		RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling, SubID: s.SubID}
}

// sessionRecord is the store's record of c's session, with the
// connection's will when withWill.
func sessionRecord(c *conn, disconnected time.Time, withWill bool) *StoredSession {
	exp := uint32(NoExpiry)
	if c.version == packet.V5 {
		exp = c.expiry
	}
	rec := &StoredSession{ClientID: c.key, Version: c.version, ExpiryInterval: exp, DisconnectedAt: disconnected}
	if w := c.will; withWill && w != nil {
		props := w.Properties
		rec.Will = &StoredMessage{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, Origin: c.key}
		if c.version == packet.V5 && !props.IsZero() {
			rec.Will.Properties = &props
		}
		rec.WillDelay = uint32(willDelay(w, c.version) / time.Second)
	}
	return rec
}

// restoreWill schedules, at start-up, the will of a stored session: one
// whose connection was open when the broker stopped (it ended then,
// abnormally) or whose delay was running. It returns the will to send at
// once, if it is due already.
func (b *Broker) restoreWill(ss *StoredSession, now time.Time) *session.Message {
	sw := ss.Will
	w := &packet.Will{Topic: sw.Topic, Payload: sw.Payload, QoS: sw.QoS, Retain: sw.Retain}
	if sw.Properties != nil {
		w.Properties = *sw.Properties
	}
	ended := ss.DisconnectedAt
	if ended.IsZero() {
		ended = now
	}
	msg, delay := willMessage(w, ss.Version, ss.ClientID, ended)
	if ss.Version == packet.V5 && ss.ExpiryInterval != NoExpiry {
		delay = min(delay, time.Duration(ss.ExpiryInterval)*time.Second)
	}
	rec := *ss
	rec.Will, rec.WillDelay, rec.DisconnectedAt = nil, 0, ended
	rec.Subscriptions, rec.Queue, rec.InboundQoS2 = nil, nil, nil
	if left := ended.Add(delay).Sub(now); left > 0 {
		b.scheduleWill(ss.ClientID, msg, nil, left, &rec)
		return nil
	}
	// A failed write is logged and counted by commit.
	_ = b.commitOne(Op{Kind: OpPutSession, ClientID: ss.ClientID, Session: &rec}, false)
	return msg
}

// restore loads the store's content into the broker at startup: sessions
// (offline, with subscriptions, queues, inflight messages to resend and
// inbound QoS 2 ids), expiry timers for 5.0 sessions, retained messages.
// Load reports the store record by record and each record becomes session
// state at once: the broker never holds a second copy of the store.
func (b *Broker) restore(ctx context.Context) error {
	r := &restorer{b: b, now: b.opts().Now()}
	if err := b.store.Load(ctx, r); err != nil {
		return fmt.Errorf("broker: loading the store: %w", err)
	}
	// Expiry timers once everything is restored: a session whose expiry
	// passed while the broker was down is removed with all of it.
	b.mu.Lock()
	for _, e := range r.expiring {
		id, s := e.id, e.s
		b.mu.expiries[s] = time.AfterFunc(e.left, func() { b.expire(id, s) })
	}
	b.mu.Unlock()
	// Wills last: they may publish to the sessions just restored.
	for i := range r.wills {
		if msg := b.restoreWill(&r.wills[i], r.now); msg != nil {
			b.sendWill(msg, nil)
		}
	}
	b.log.Info("store loaded", "sessions", r.sessions, "queued", r.queued, "retained", r.retained)
	return nil
}

// restorer is the Restorer restore hands to Store.Load.
type restorer struct {
	b   *Broker
	now time.Time
	// last and lastID are the session of the previous record: a store
	// reports a session's records together, so the map is rarely read.
	last   *session.Session
	lastID string
	// expiring are the 5.0 sessions whose expiry timers start after Load.
	expiring []restoredExpiry
	// wills are the records of the sessions with a will (lists empty).
	wills                      []StoredSession
	sessions, queued, retained int
}

type restoredExpiry struct {
	id   string
	s    *session.Session
	left time.Duration
}

func (r *restorer) RestoreSession(ss *StoredSession) error {
	b := r.b
	s := session.New(ss.ClientID, b.sessionLimits())
	s.SetPersistent(true)
	// Its drops count for its tenant before its client connects again;
	// the tenant's shared queue bound is set when it does (setTenant).
	tenant, _ := SplitSessionKey(ss.ClientID)
	s.SetTenant(b.tenant(tenant))
	b.mu.Lock()
	b.mu.sessions[ss.ClientID] = s
	b.mu.Unlock()
	r.last, r.lastID = s, ss.ClientID
	r.sessions++
	if ss.Version == packet.V5 && ss.ExpiryInterval != NoExpiry {
		since := ss.DisconnectedAt
		if since.IsZero() {
			since = r.now
		}
		left := since.Add(time.Duration(ss.ExpiryInterval) * time.Second).Sub(r.now)
		s.SetExpiresAt(r.now.Add(max(left, 0))) // for the admin API
		r.expiring = append(r.expiring, restoredExpiry{id: ss.ClientID, s: s, left: max(left, 0)})
	}
	if ss.Will != nil {
		rec := *ss
		rec.Subscriptions, rec.Queue, rec.InboundQoS2 = nil, nil, nil
		r.wills = append(r.wills, rec)
	}
	return nil
}

// session returns the restored session clientID.
func (r *restorer) session(clientID string) (*session.Session, error) {
	if clientID == r.lastID && r.last != nil {
		return r.last, nil
	}
	r.b.mu.Lock()
	s := r.b.mu.sessions[clientID]
	r.b.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("broker: the store reported a record of session %q before the session", clientID)
	}
	r.last, r.lastID = s, clientID
	return s, nil
}

func (r *restorer) RestoreSubscription(clientID string, sub *StoredSubscription) error {
	s, err := r.session(clientID)
	if err != nil {
		return err
	}
	// Its last identity is not known (Guard.Owner nil): the
	// subscriptions are authorized again when a client resumes it.
	rs := session.Subscription{Filter: sub.Filter, QoS: sub.QoS, NoLocal: sub.NoLocal,
		RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, SubID: sub.SubID}
	s.Subscribe(rs)
	k, inner, v := subscriberOf(s, rs) // the session's tenant is in its key
	r.b.subs.Subscribe(inner, k, v)
	return nil
}

func (r *restorer) RestoreDelivery(clientID string, sd *StoredDelivery) error {
	s, err := r.session(clientID)
	if err != nil {
		return err
	}
	d := session.Delivery{Msg: restoredMessage(&sd.Msg), QoS: sd.QoS, Retain: sd.Retain,
		SubIDs: sd.SubIDs, Share: sd.Share, ShareFilter: sd.ShareFilter, Seq: sd.Seq}
	s.Restore(d, sd.PacketID, session.RestoreState(sd.State))
	r.queued++
	return nil
}

func (r *restorer) RestoreInbound(clientID string, pid uint16) error {
	s, err := r.session(clientID)
	if err != nil {
		return err
	}
	s.RestoreInbound(pid)
	return nil
}

func (r *restorer) RestoreRetained(m *StoredMessage) error {
	r.b.retained.Set(m.Topic, restoredMessage(m))
	r.retained++
	return nil
}
