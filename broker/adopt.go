package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/topic"
	"github.com/petrel-mqtt/petrel/packet"
)

// Adoption: in a cluster with a session journal (SessionJournal) and a
// message log (FabricLog), a persistent session lives in the journal,
// and the node its client connects to adopts it: after the claim
// (Fabric.Claim, which closed the connection another node had), the node
// reads the session's records from the journal (subscriptions, queued and
// in-flight deliveries with their packet ids and states, inbound QoS 2
// ids), then catches it up from the log: every logged message after the
// session's LastSeq that its subscriptions match, written to the journal
// before it is queued. The last step runs under logMu, so that the
// follower's next message finds the session in the trie and nothing falls
// between (fabric_log.go). A session this node holds already is used as
// it is: nobody else held it since (a claim elsewhere kicks it out of
// here, KickRemote).

// adoptTimeout bounds an adoption, the journal's read and the log's
// catch-up together; the CONNECT is refused (server unavailable) past it.
const adoptTimeout = 10 * time.Second

// adoptFlush is how many caught-up deliveries are written to the journal
// in one commit, so that a long absence is caught up in bounded steps.
const adoptFlush = 1024

// errLogNotFollowed refuses an adoption before this node follows the log.
var errLogNotFollowed = errors.New("cluster: this node does not follow the message log yet")

// adopt brings c's session from the cluster's journal when this node does
// not hold it. With cleanStart nothing is read: c.journalDiscard makes
// persistSession delete the journal's copy.
func (c *conn) adopt(cleanStart bool) error {
	b := c.b
	if b.journal == nil {
		return nil
	}
	b.mu.Lock()
	held := b.mu.sessions[c.key] != nil
	b.mu.Unlock()
	if held {
		return nil
	}
	if cleanStart {
		c.journalDiscard = true
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), adoptTimeout)
	defer cancel()
	b.logMu.Lock()
	started := b.logMu.started
	b.logMu.Unlock()
	if !started {
		return errLogNotFollowed
	}
	a := &adopter{b: b, key: c.key, window: b.opts().MaxInflight}
	found, err := b.journal.LoadSession(ctx, c.key, a)
	if err != nil {
		return fmt.Errorf("cluster: reading the session from the journal: %w", err)
	}
	if !found || a.s == nil {
		// A new session: its first write starts the journal's copy
		// afresh (the journal compacts only a session it started or
		// adopted).
		c.journalDiscard = true
		return nil
	}
	if a.expired(b.opts().Now()) {
		// It ended while no node held it [MQTT-3.1.2-23]: what the
		// journal keeps of it goes with the new session's first write.
		c.journalDiscard = true
		return nil
	}
	if err := a.catchUp(ctx); err != nil {
		return err
	}
	b.syncInterest()
	b.stats.cluster.adopted.Add(1)
	b.stats.cluster.caughtUp.Add(uint64(a.caughtUp))
	b.log.Info("session adopted from the cluster's journal", "tenant", c.id.Tenant, "client", c.clientID,
		"queued", a.queued, "caught_up", a.caughtUp)
	return nil
}

// adopter is the Restorer of an adoption: it builds the session apart,
// put in the broker's maps and trie only by install.
type adopter struct {
	b        *Broker
	key      string
	window   int
	rec      StoredSession
	s        *session.Session
	subs     []session.Subscription
	stale    Batch
	queued   int
	caughtUp int
}

func (a *adopter) RestoreSession(ss *StoredSession) error {
	if ss.ClientID != a.key || a.s != nil {
		return fmt.Errorf("cluster journal: record of session %q while adopting %q", ss.ClientID, a.key)
	}
	a.rec = *ss
	a.rec.Will, a.rec.Holder = nil, nil // a will of a connection that ended elsewhere is not sent here
	s := session.New(a.key, a.b.sessionLimits())
	s.SetPersistent(true)
	tenant, _ := SplitSessionKey(a.key)
	s.SetTenant(a.b.tenant(tenant))
	s.NoteSeq(ss.LastSeq)
	a.s = s
	return nil
}

func (a *adopter) session(clientID string) (*session.Session, error) {
	if a.s == nil || clientID != a.key {
		return nil, fmt.Errorf("cluster journal: record of session %q before the session", clientID)
	}
	return a.s, nil
}

func (a *adopter) RestoreSubscription(clientID string, sub *StoredSubscription) error {
	s, err := a.session(clientID)
	if err != nil {
		return err
	}
	rs := restoredSubscription(sub)
	s.Subscribe(rs)
	a.subs = append(a.subs, rs)
	return nil
}

func (a *adopter) RestoreDelivery(clientID string, sd *StoredDelivery) error {
	s, err := a.session(clientID)
	if err != nil {
		return err
	}
	restoreDelivery(s, clientID, sd, a.window, &a.stale)
	a.queued++
	return nil
}

func (a *adopter) RestoreInbound(clientID string, pid uint16, write uint64) error {
	s, err := a.session(clientID)
	if err != nil {
		return err
	}
	s.RestoreInbound(pid, write)
	return nil
}

func (a *adopter) RestoreRetained(*StoredMessage) error {
	return errors.New("cluster journal: a retained message among a session's records")
}

// expired reports whether the 5.0 session ran past its expiry interval
// since it went offline.
func (a *adopter) expired(now time.Time) bool {
	r := &a.rec
	if r.Version != packet.V5 || r.ExpiryInterval == NoExpiry || r.DisconnectedAt.IsZero() {
		return false
	}
	return !now.Before(r.DisconnectedAt.Add(time.Duration(r.ExpiryInterval) * time.Second))
}

// catchUp reads the log after the session's last delivery, writes what
// its subscriptions match to the journal, queues it, and installs the
// session once the follower has routed nothing the read did not cover.
func (a *adopter) catchUp(ctx context.Context) error {
	b := a.b
	if a.stale.Len() > 0 {
		_ = b.commit(&a.stale, false) // logged and counted by commit; found stale again next time
	}
	var filters []string
	for _, sub := range a.subs {
		if group, _ := splitShared(sub.Filter); group == "" {
			filters = append(filters, sub.Filter)
		}
	}
	after := a.s.LastSeq()
	for {
		if len(filters) > 0 {
			last, err := a.readLog(ctx, after, filters)
			if err != nil {
				return err
			}
			after = max(after, last)
		}
		b.logMu.Lock()
		if b.logMu.applied <= after {
			ok := a.install()
			b.logMu.Unlock()
			if !ok {
				return errors.New("cluster: the session was taken while it was adopted")
			}
			return nil
		}
		b.logMu.Unlock()
		if len(filters) == 0 {
			after = max(after, b.logApplied()) // nothing to read: the follower's position will do
		}
	}
}

// logApplied returns the last log sequence the follower routed.
func (b *Broker) logApplied() uint64 {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.logMu.applied
}

// readLog catches the session up with the log's messages after seq after
// matching filters, in steps of adoptFlush deliveries written to the
// journal then queued, and returns the log's last sequence it read to.
func (a *adopter) readLog(ctx context.Context, after uint64, filters []string) (uint64, error) {
	b := a.b
	rt := routingPool.Get().(*routing)
	defer rt.release()
	flush := func() error {
		if len(rt.staged) == 0 {
			return nil
		}
		if err := b.writeStaged(rt, nil, true); err != nil {
			return fmt.Errorf("cluster: writing caught-up deliveries to the journal: %w", err)
		}
		b.queueStaged(rt)
		a.caughtUp += len(rt.staged)
		clear(rt.staged)
		rt.staged = rt.staged[:0]
		rt.batch.Reset()
		rt.cleanup.Reset()
		return nil
	}
	last, err := b.flog.ReadLog(ctx, after, filters, func(seq uint64, msg *session.Message) error {
		rt.logSeq = seq
		a.deliver(rt, msg)
		if len(rt.staged) >= adoptFlush {
			return flush()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cluster: catching the session up from the message log: %w", err)
	}
	return last, flush()
}

// deliver stages the log's message rt.logSeq for the adopted session, as
// route would for its plain subscriptions: once, at the highest QoS of
// those that match, with every subscription identifier [MQTT-3.3.5-1]
// (their authorization is applied again when the client attaches, hold).
func (a *adopter) deliver(rt *routing, msg *session.Message) {
	var best session.Subscription
	var ids []uint32
	found := false
	for _, sub := range a.subs {
		if group, _ := splitShared(sub.Filter); group != "" || !topic.Match(sub.Filter, msg.Topic) {
			continue
		}
		if sub.NoLocal && msg.Origin == a.key {
			continue // [MQTT-3.8.3-3]
		}
		best.QoS = max(best.QoS, sub.QoS)
		best.RetainAsPublished = best.RetainAsPublished || sub.RetainAsPublished
		if sub.SubID != 0 {
			ids = append(ids, sub.SubID)
		}
		found = true
	}
	if !found {
		return
	}
	d := session.Delivery{Msg: msg, QoS: min(msg.QoS, best.QoS), Retain: msg.Retain && best.RetainAsPublished, SubIDs: ids}
	if d.QoS == 0 {
		return
	}
	stageLogged(rt, a.s, d)
}

// install puts the adopted session and its subscriptions in the broker,
// unless a session of its key appeared meanwhile. logMu is held.
func (a *adopter) install() bool {
	b := a.b
	b.mu.Lock()
	if b.mu.sessions[a.key] != nil || b.mu.clients[a.key] != nil {
		b.mu.Unlock()
		return false
	}
	b.mu.sessions[a.key] = a.s
	b.mu.Unlock()
	for _, sub := range a.subs {
		k, inner, v := subscriberOf(a.s, sub)
		b.subscribeTrie(inner, k, v)
	}
	return true
}
