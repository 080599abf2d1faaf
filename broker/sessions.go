package broker

import (
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/topic"
	"github.com/petrel-mqtt/petrel/packet"
)

// takeoverWait bounds how long a new connection waits for the one it takes
// over to finish; the old writer's last write is bounded by closeTimeout.
const takeoverWait = 3 * closeTimeout

// attach makes c the connection of client id: an existing connection with
// that id is closed first and its cleanup awaited [MQTT-3.1.4-2]. With
// cleanStart the old session is discarded [MQTT-3.1.2-6]; otherwise it is
// resumed. present reports a resumed session.
func (b *Broker) attach(c *conn, id string, cleanStart bool) (s *session.Session, present bool) {
	for {
		b.mu.Lock()
		old := b.mu.clients[id]
		if old == nil {
			s = b.mu.sessions[id]
			if s != nil && cleanStart {
				b.dropSessionLocked(s)
				s = nil
			}
			if s == nil {
				s = session.New(id, b.sessionLimits())
				b.mu.sessions[id] = s
			} else {
				present = true
			}
			b.mu.clients[id] = c
			b.mu.Unlock()
			return s, present
		}
		jail := b.flapping.note(id, b.opts().Now())
		b.mu.Unlock()
		b.log.Info("client id taken over", "client", id, "old_remote", old.remote, "new_remote", c.remote)
		if jail {
			// Two clients fighting over one id reconnect in a loop; make
			// the newcomer wait so the fight costs little (DESIGN.md).
			b.log.Warn("client id flapping: delaying takeover", "client", id, "delay", flapDelay)
			select {
			case <-time.After(flapDelay):
			case <-b.done:
			}
		}
		old.closeWith(packet.SessionTakenOver, reasonTakeover)
		select {
		case <-old.finished:
		case <-time.After(takeoverWait):
			// The old connection is wedged; detach it by force so the
			// new one is not refused.
			b.log.Error("taken-over connection did not finish; detaching it", "client", id)
			b.mu.Lock()
			if b.mu.clients[id] == old {
				delete(b.mu.clients, id)
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

// flapTracker counts recent takeovers per client id. Guarded by Broker.mu.
type flapTracker struct {
	m map[string]*flapCount
}

type flapCount struct {
	since time.Time
	n     int
}

// note records a takeover of id at now and reports whether id is flapping.
func (f *flapTracker) note(id string, now time.Time) bool {
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
	fc := f.m[id]
	if fc == nil || now.Sub(fc.since) > flapWindow {
		fc = &flapCount{since: now}
		f.m[id] = fc
	}
	fc.n++
	return fc.n > flapLimit
}

// detach ends c's hold on its session: the session goes offline, or is
// discarded when it ends with the connection (clean session).
func (b *Broker) detach(c *conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.clients[c.clientID] == c {
		delete(b.mu.clients, c.clientID)
	}
	c.sess.Detach()
	if c.clean && b.mu.sessions[c.clientID] == c.sess {
		b.dropSessionLocked(c.sess)
	}
}

// dropSessionLocked discards a session and its subscriptions.
func (b *Broker) dropSessionLocked(s *session.Session) {
	for _, sub := range s.Subscriptions() {
		group, inner := splitShared(sub.Filter)
		b.subs.Unsubscribe(inner, subKey{s: s, group: group})
	}
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
