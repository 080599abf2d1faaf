package broker

import (
	"errors"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/topic"
	"github.com/petrel-mqtt/petrel/packet"
)

// takeoverWait bounds how long a new connection waits for the one it takes
// over to finish; the old writer's last write is bounded by closeTimeout.
const takeoverWait = 3 * closeTimeout

var (
	// errConnectionLimit refuses a connection that would exceed
	// MaxConnections (a takeover adds none).
	errConnectionLimit = errors.New("broker: connection limit reached")
	// errAttachWaits tells an inline reader (conn.serveInline) that
	// attaching would wait: a takeover, a delayed will to send, a stored
	// session to discard. Nothing was changed; a connection goroutine
	// handles the CONNECT again.
	errAttachWaits = errors.New("broker: attaching would wait")
)

// attach makes c the connection of its session key c.key (SessionKey: the
// client id within c's tenant): an existing connection with that key is
// closed first and its cleanup awaited [MQTT-3.1.4-2]; a connection of
// the same client id in another tenant is another key and is never
// touched. With cleanStart the old session is discarded [MQTT-3.1.2-6];
// otherwise it is resumed. present reports a resumed session,
// discardedStored a discarded one that was in the store. It fails with
// errConnectionLimit when c would exceed MaxConnections, decided here,
// after authentication, because only the key says whether c takes over
// a connection; and, for an inline reader, with errAttachWaits.
func (b *Broker) attach(c *conn, cleanStart bool) (s *session.Session, present, discardedStored bool, err error) {
	key := c.key
	defer b.syncInterest() // a clean start dropped the old session's subscriptions
	for {
		b.mu.Lock()
		old := b.mu.clients[key]
		if old == nil {
			if b.fabric != nil && b.unclaimLocked(c) {
				b.mu.Unlock()
				return nil, false, false, errClaimLost
			}
			s = b.mu.sessions[key]
			w := b.mu.wills[key]
			if c.inline && (w != nil || (b.store != nil && s != nil)) {
				b.mu.Unlock()
				return nil, false, false, errAttachWaits
			}
			if max := b.opts().MaxConnections; max > 0 && len(b.mu.clients) >= max {
				b.mu.Unlock()
				return nil, false, false, errConnectionLimit
			}
			if t := b.mu.expiries[s]; t != nil { // the session lives on
				t.Stop()
				delete(b.mu.expiries, s)
			}
			// A delayed will is not sent when the session is resumed in
			// time [MQTT-3.1.3-9]; when it is not resumed (clean start) the
			// old session ends now, and with it the delay.
			delete(b.mu.wills, key)
			if w != nil {
				fired := !w.timer.Stop() // fired but not yet sent: its func finds the map changed
				if fired || cleanStart || s == nil {
					defer b.sendWill(w.msg, w.id)
				}
			}
			if s != nil && cleanStart {
				discardedStored = s.Persistent()
				b.dropSessionLocked(s)
				s = nil
			}
			if s == nil {
				s = session.New(key, b.sessionLimits())
				b.mu.sessions[key] = s
			} else {
				present = true
			}
			b.mu.clients[key] = c
			b.mu.Unlock()
			return s, present, discardedStored, nil
		}
		if c.inline {
			b.mu.Unlock()
			return nil, false, false, errAttachWaits
		}
		jail := b.flapping.note(key, b.opts().Now())
		b.mu.Unlock()
		tenant := c.id.Tenant
		b.log.Info("client id taken over", AuditKey, AuditTakeover, "tenant", tenant, "client", c.clientID, "principal", c.id.Principal, "old_remote", old.remoteString(), "new_remote", c.remoteString())
		if jail {
			// Two clients fighting over one id reconnect in a loop; make
			// the newcomer wait so the fight costs little (DESIGN.md).
			b.log.Warn("client id flapping: delaying takeover", "tenant", tenant, "client", c.clientID, "delay", flapDelay)
			select {
			case <-time.After(flapDelay):
			case <-b.done:
			}
		}
		old.closeWith(packet.SessionTakenOver, reasonTakeover)
		select {
		case <-old.finishedChan():
		case <-time.After(takeoverWait):
			// The old connection is wedged; detach it by force so the
			// new one is not refused.
			b.log.Error("taken-over connection did not finish; detaching it", "tenant", tenant, "client", c.clientID)
			b.mu.Lock()
			if b.mu.clients[key] == old {
				delete(b.mu.clients, key)
			}
			b.mu.Unlock()
		}
	}
}

// Flap damping: more than flapLimit takeovers of one id within flapWindow
// delay each further takeover by flapDelay.
const (
	flapLimit  = 5
	flapWindow = 10 * time.Second
	flapDelay  = time.Second
)

// flapTracker counts recent takeovers per session key (SessionKey), so
// that one tenant's fight over an id never delays another tenant's
// connections. Guarded by Broker.mu.
type flapTracker struct {
	m map[string]*flapCount
}

type flapCount struct {
	since time.Time
	n     int
}

// note records a takeover of key at now and reports whether it is flapping.
func (f *flapTracker) note(key string, now time.Time) bool {
	if f.m == nil {
		f.m = make(map[string]*flapCount)
	}
	if len(f.m) > 10_000 { // forget stale entries so the map stays small
		for k, v := range f.m {
			if now.Sub(v.since) > flapWindow {
				delete(f.m, k)
			}
		}
	}
	fc := f.m[key]
	if fc == nil || now.Sub(fc.since) > flapWindow {
		fc = &flapCount{since: now}
		f.m[key] = fc
	}
	fc.n++
	return fc.n > flapLimit
}

// detach ends c's hold on its session: the session goes offline, or is
// discarded when it ends with the connection (clean session, 5.0 expiry
// 0); a 5.0 session with an expiry interval is discarded when it runs out
// [MQTT-3.1.2-23]. It returns the shared-subscription messages the session
// held (also for a session that lives on: they go to members that are
// online), for the caller to give to other members of their groups.
//
// keepWill says the connection's will is now delayed: the store record
// keeps it, so that a restart still sends it.
//
// With a fabric, a session that ends here is released (Fabric.Release),
// unless another node took it over (KickRemote).
func (b *Broker) detach(c *conn, keepWill bool) []session.Delivery {
	op := Op{Kind: OpDeleteSession, ClientID: c.key}
	if !c.clean {
		op.Kind = OpPutSession
		if b.store != nil { // only a store's session is written (Persistent below)
			op.Session = sessionRecord(c, b.opts().Now(), keepWill)
		}
	}
	release := false
	defer func() { // after b.mu is released
		if op.Kind != 0 && c.sess.Persistent() {
			// A failed write is logged and counted by commit.
			_ = b.commitOne(op, false)
		}
		b.syncInterest()
		if release {
			b.fabric.Release(c.key)
		}
	}()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.retireLocked(c)
	if b.mu.clients[c.key] == c {
		delete(b.mu.clients, c.key)
	}
	c.sess.Detach()
	if b.mu.sessions[c.key] != c.sess {
		op.Kind = 0
		return nil
	}
	shared := c.sess.TakeShared()
	if c.clean {
		b.dropSessionLocked(c.sess)
		release = b.fabric != nil && !c.remoteKicked
		return shared
	}
	b.rememberHolder(c.sess, c.id)
	if c.version == packet.V5 && c.expiry != noExpiry {
		d := time.Duration(c.expiry) * time.Second
		if max := b.opts().MaxSessionExpiry; max > 0 && d > max {
			d = max
		}
		s, key := c.sess, c.key
		s.SetExpiresAt(b.opts().Now().Add(d)) // for the admin API
		b.mu.expiries[s] = time.AfterFunc(d, func() { b.expire(key, s) })
	}
	return shared
}

// noExpiry is the 5.0 session expiry interval that means "never".
const noExpiry = 0xFFFFFFFF

// expire ends the offline session of key whose expiry interval ran out,
// sending its delayed will, if any, now [MQTT-3.1.3-9].
func (b *Broker) expire(key string, s *session.Session) {
	b.mu.Lock()
	if b.mu.expiries[s] == nil || b.mu.sessions[key] != s || b.mu.clients[key] != nil {
		b.mu.Unlock()
		return
	}
	delete(b.mu.expiries, s)
	b.dropSessionLocked(s)
	w := b.mu.wills[key]
	delete(b.mu.wills, key)
	b.mu.Unlock()
	b.syncInterest()
	if b.fabric != nil {
		b.fabric.Release(key)
	}
	tenant, id := SplitSessionKey(key)
	b.log.Info("session expired", "tenant", tenant, "client", id)
	// A failed write is logged and counted by commit; the session then
	// comes back at restart and expires again.
	_ = b.commitOne(Op{Kind: OpDeleteSession, ClientID: key}, false)
	if w != nil {
		w.timer.Stop() // if it fired, its func finds the map changed and sends nothing
		b.sendWill(w.msg, w.id)
		b.dropWill(key)
	}
}

// pendingWill is a 5.0 will waiting out its Will Delay Interval.
type pendingWill struct {
	msg   *session.Message
	id    *Identity // who set it (for a will restored from the store, its record's Holder; nil when it has none)
	timer *time.Timer
}

// scheduleWill publishes msg, set by id, after delay unless the session of
// key is resumed or has ended first.
// rec, when not nil, is the session's store record without the will,
// written once the will is sent so that a restart does not send it again.
func (b *Broker) scheduleWill(key string, msg *session.Message, id *Identity, delay time.Duration, rec *StoredSession) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := &pendingWill{msg: msg, id: id}
	w.timer = time.AfterFunc(delay, func() {
		b.mu.Lock()
		if b.mu.wills[key] != w {
			b.mu.Unlock()
			return
		}
		delete(b.mu.wills, key)
		_, exists := b.mu.sessions[key]
		b.mu.Unlock()
		b.sendWill(msg, id)
		b.dropWill(key)
		if rec != nil && exists {
			// A failed write is logged and counted by commit; the will
			// would then be sent again after a restart.
			_ = b.commitOne(Op{Kind: OpPutSession, ClientID: key, Session: rec}, false)
		}
	})
	if old := b.mu.wills[key]; old != nil {
		old.timer.Stop()
	}
	b.mu.wills[key] = w
}

// sendWill publishes a will message as a PUBLISH would be [MQTT-3.1.2-8],
// if id, the identity that set it, may still publish it under the policy
// in force: the will was authorized at CONNECT, and the policy (a reload,
// a restart with another configuration) or the identity's roles (a
// re-authentication) may have changed since. A will restored from the
// store is decided for the holder its record names; one whose record
// names none (written before holders were stored) is not published
// unless the Authorizer is AllowAll. A will not published is logged at
// WARN and counted (Stats.WillsRefused).
func (b *Broker) sendWill(msg *session.Message, id *Identity) {
	authz := b.opts().Authorizer
	_, all := authz.(AllowAll)
	if !all && (id == nil || !authz.CanPublish(id, msg.Topic, msg.QoS, msg.Retain)) {
		tenant, client := SplitSessionKey(msg.Origin)
		cause := "authorization changed since CONNECT"
		if id == nil {
			cause = "the identity that set it is not known (a store record written before wills' holders were)"
		}
		b.log.Warn("will not published", "tenant", tenant, "client", client, "topic", msg.Topic,
			"reason", "not authorized", "cause", cause)
		b.stats.willsRefused.Add(1)
		return
	}
	var extra Batch
	if msg.Retain && b.store != nil {
		extra.Add(retainOp(msg))
	}
	if _, err := b.publish(msg, &extra, false); err != nil {
		return // logged and counted by commit
	}
	if msg.Retain { // [MQTT-3.1.2-17]
		b.retainMessage(msg)
	}
}

// dropSessionLocked discards a session and its subscriptions. Under the
// session's Guard: a concurrent re-authorization finds it Ended and puts
// nothing back in the trie.
func (b *Broker) dropSessionLocked(s *session.Session) {
	s.Guard.Lock()
	s.Guard.Ended = true
	s.Discard() // what it holds stops counting against the tenant and the budget
	for _, sub := range s.Subscriptions() {
		k, inner := subKeyOf(s, sub.Filter)
		b.unsubscribeTrie(inner, k)
	}
	s.Guard.Unlock()
	delete(b.mu.sessions, s.ID)
}

// splitShared returns the group and inner filter of a validated filter.
func splitShared(filter string) (group, inner string) {
	group, inner, shared, err := topic.ParseShared(filter)
	if err != nil || !shared {
		return "", filter
	}
	return group, inner
}
