package broker

import (
	"context"
	"fmt"
	"runtime/debug"
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
	if err := b.store.Commit(batch, durable); err != nil {
		b.stats.storeErrors.Add(1)
		b.log.Error("store write failed", "err", err, "ops", batch.Len(), "durable", durable)
		return fmt.Errorf("%w: %w", errStore, err)
	}
	return nil
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
	rec := &StoredSession{ClientID: c.clientID, Version: c.version, ExpiryInterval: exp, DisconnectedAt: disconnected}
	if w := c.will; withWill && w != nil {
		props := w.Properties
		rec.Will = &StoredMessage{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, Origin: c.clientID}
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
		b.scheduleWill(ss.ClientID, msg, left, &rec)
		return nil
	}
	// A failed write is logged and counted by commit.
	_ = b.commitOne(Op{Kind: OpPutSession, ClientID: ss.ClientID, Session: &rec}, false)
	return msg
}

// releaseAfterRestore is the number of restored messages (queued and
// retained) from which restore has the runtime collect the loaded state
// and return its memory to the OS: 1M queued messages of 100 B left the
// broker at 2.2x its live heap without it (BENCHMARKS.md).
const releaseAfterRestore = 100_000

// freeOSMemory is debug.FreeOSMemory; tests replace it.
var freeOSMemory = debug.FreeOSMemory

// restore loads the store's content into the broker at startup: sessions
// (offline, with subscriptions, queues, inflight messages to resend and
// inbound QoS 2 ids), expiry timers for 5.0 sessions, retained messages.
func (b *Broker) restore(ctx context.Context) error {
	st, err := b.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("broker: loading the store: %w", err)
	}
	now := b.opts().Now()
	queued := 0
	for _, ss := range st.Sessions {
		s := session.New(ss.ClientID, b.sessionLimits())
		s.SetPersistent(true)
		for _, sub := range ss.Subscriptions {
			s.Subscribe(session.Subscription{Filter: sub.Filter, QoS: sub.QoS, NoLocal: sub.NoLocal,
				RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, SubID: sub.SubID})
			group, inner := splitShared(sub.Filter)
			b.subs.Subscribe(inner, subKey{s: s, group: group}, newSubscriber(inner, group, sub.QoS,
				sub.NoLocal, sub.RetainAsPublished, sub.SubID))
		}
		for i := range ss.Queue {
			sd := &ss.Queue[i]
			d := session.Delivery{Msg: restoredMessage(&sd.Msg), QoS: sd.QoS, Retain: sd.Retain,
				SubIDs: sd.SubIDs, Share: sd.Share, ShareFilter: sd.ShareFilter, Seq: sd.Seq}
			s.Restore(d, sd.PacketID, session.RestoreState(sd.State))
			queued++
		}
		for _, pid := range ss.InboundQoS2 {
			s.RestoreInbound(pid)
		}
		b.mu.Lock()
		b.mu.sessions[ss.ClientID] = s
		if ss.Version == packet.V5 && ss.ExpiryInterval != NoExpiry {
			since := ss.DisconnectedAt
			if since.IsZero() {
				since = now
			}
			left := since.Add(time.Duration(ss.ExpiryInterval) * time.Second).Sub(now)
			id := ss.ClientID
			b.mu.expiries[s] = time.AfterFunc(max(left, 0), func() { b.expire(id, s) })
		}
		b.mu.Unlock()
	}
	for _, m := range st.Retained {
		b.retained.Set(m.Topic, restoredMessage(m))
	}
	// Wills last: they may publish to the sessions just restored.
	for _, ss := range st.Sessions {
		if ss.Will != nil {
			if msg := b.restoreWill(ss, now); msg != nil {
				b.sendWill(msg)
			}
		}
	}
	b.log.Info("store loaded", "sessions", len(st.Sessions), "queued", queued, "retained", len(st.Retained))
	if queued+len(st.Retained) >= releaseAfterRestore {
		// What Load returned is garbage now, as large as what was
		// restored, and an idle broker would not collect it for minutes
		// (the runtime's forced collection): collect it and give its
		// pages back, off the start-up path.
		go freeOSMemory()
	}
	return nil
}
