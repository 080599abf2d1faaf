package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// restoreWill schedules, at start-up, the will of a stored session: one
// whose connection was open when the broker stopped (it ended then,
// abnormally) or whose delay was running. It returns the will to send at
// once, if it is due already, and the identity that set it (the record's
// Holder; nil in a record written before holders were stored), for which
// it is authorized again when sent (sendWill).
func (b *Broker) restoreWill(ss *StoredSession, now time.Time) (*session.Message, *Identity) {
	ended := ss.DisconnectedAt
	if ended.IsZero() {
		ended = now
	}
	msg, delay := storedWill(ss, ended)
	holder := restoredHolder(ss.Holder, ss.ClientID)
	rec := *ss
	rec.Will, rec.WillDelay, rec.Holder, rec.DisconnectedAt = nil, 0, nil, ended
	rec.Subscriptions, rec.Queue, rec.InboundQoS2 = nil, nil, nil
	if left := ended.Add(delay).Sub(now); left > 0 {
		b.scheduleWill(ss.ClientID, msg, holder, left, &rec)
		return nil, nil
	}
	// A failed write is logged and counted by commit.
	_ = b.commitOne(Op{Kind: OpPutSession, ClientID: ss.ClientID, Session: &rec}, false)
	return msg, holder
}

// restore loads the store's content into the broker at startup: sessions
// (offline, with subscriptions, queues, inflight messages to resend and
// inbound QoS 2 ids), expiry timers for 5.0 sessions, retained messages.
// Load reports the store record by record and each record becomes session
// state at once: the broker never holds a second copy of the store.
func (b *Broker) restore(ctx context.Context) error {
	r := &restorer{b: b, now: b.opts().Now(), window: b.opts().MaxInflight}
	if err := b.store.Load(ctx, r); err != nil {
		return fmt.Errorf("broker: loading the store: %w", err)
	}
	if r.stale.Len() > 0 {
		// Not synced: if lost, the next start finds them stale again. A
		// failed write is logged and counted by commit.
		_ = b.commit(&r.stale, false)
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
		if msg, holder := b.restoreWill(&r.wills[i], r.now); msg != nil {
			b.sendWill(msg, holder)
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
	// window is the inflight window of a restored session's first
	// deliveries (Session.Restore).
	window int
	// stale removes the deliveries Session.Restore found ended.
	stale Batch
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
	rs := restoredSubscription(sub)
	s.Subscribe(rs)
	k, inner, v := subscriberOf(s, rs) // the session's tenant is in its key
	r.b.subscribeTrie(inner, k, v)     // the fabric is told once Load returned (New)
	return nil
}

func (r *restorer) RestoreDelivery(clientID string, sd *StoredDelivery) error {
	s, err := r.session(clientID)
	if err != nil {
		return err
	}
	restoreDelivery(s, clientID, sd, r.window, &r.stale)
	r.queued++
	return nil
}

func (r *restorer) RestoreInbound(clientID string, pid uint16, write uint64) error {
	s, err := r.session(clientID)
	if err != nil {
		return err
	}
	s.RestoreInbound(pid, write)
	return nil
}

func (r *restorer) RestoreRetained(m *StoredMessage) error {
	r.b.retained.Set(m.Topic, restoredMessage(m))
	r.retained++
	return nil
}
