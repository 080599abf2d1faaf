package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// watchKey names one watched (filter, share group).
type watchKey struct{ filter, share string }

// watch is the NATS subscriptions of one watched (filter, share): one,
// or two for a filter ending in '#'.
type watch struct {
	refs int
	subs []*nats.Subscription
}

// queueName is the NATS queue group of share group share on filter: a
// hash, so that it is a valid token whatever the share key holds, and
// distinct per tenant (the share key is) and per filter (one group on two
// filters is two shared subscriptions, each picking its own member).
func queueName(share, filter string) string {
	h := sha256.New()
	h.Write([]byte(share))
	h.Write([]byte{0})
	h.Write([]byte(filter))
	return "q" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Watch implements broker.Fabric: it subscribes to filter's subjects,
// once per distinct (filter, share) however many times it is called
// (reference-counted with Unwatch). A plain watch subscribes on the data
// connection; a share group's is a queue subscription on the share
// connection.
func (n *Node) Watch(filter, share string) {
	if subscribed := n.watchLocal(filter, share); subscribed && share != "" {
		// This node's own publishes go to its share groups through the
		// server: wait (bounded) until the server has the queue
		// subscription, so that a publish here after the SUBACK reaches
		// the new member.
		if err := n.share.FlushTimeout(flushWait); err != nil {
			n.log.Warn("cluster: share group subscription not confirmed", "err", err)
		}
	}
}

// flushWait bounds the wait for the local server to confirm a share
// group's subscription.
const flushWait = 2 * time.Second

// watchLocal adds a reference to (filter, share), subscribing when it is
// the first; it reports whether it subscribed.
func (n *Node) watchLocal(filter, share string) bool {
	subjects, err := FilterSubjects(filter)
	if err != nil {
		n.count.watchFailed.Add(1)
		n.log.Warn("cluster: filter not watched", "filter", shorten(filter), "err", err)
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed {
		return false
	}
	k := watchKey{filter, share}
	if w := n.mu.watches[k]; w != nil {
		w.refs++
		return false
	}
	w := &watch{refs: 1}
	for _, s := range subjects {
		var sub *nats.Subscription
		if share == "" {
			sub, err = n.data.ChanSubscribe(s, n.plainCh)
		} else {
			sub, err = n.share.ChanQueueSubscribe(s, queueName(share, filter), n.shareCh)
		}
		if err != nil {
			n.count.watchFailed.Add(1)
			n.log.Warn("cluster: filter not watched", "filter", shorten(filter), "err", err)
			continue
		}
		if share != "" {
			n.shares.Store(sub, share)
			n.count.shareWatches.Add(1)
		}
		w.subs = append(w.subs, sub)
	}
	n.mu.watches[k] = w
	return true
}

// Unwatch implements broker.Fabric.
func (n *Node) Unwatch(filter, share string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := watchKey{filter, share}
	w := n.mu.watches[k]
	if w == nil {
		return
	}
	if w.refs--; w.refs > 0 {
		return
	}
	delete(n.mu.watches, k)
	n.unsubscribeLocked(w, share)
}

// unsubscribeLocked ends a watch's subscriptions, keeping their drop
// counts.
func (n *Node) unsubscribeLocked(w *watch, share string) {
	for _, sub := range w.subs {
		if d, err := sub.Dropped(); err == nil {
			n.count.inboxDropped.Add(uint64(d))
		}
		if err := sub.Unsubscribe(); err != nil {
			n.log.Debug("cluster: unsubscribe", "subject", shorten(sub.Subject), "err", err)
		}
		if share != "" {
			n.shares.Delete(sub)
			n.count.shareWatches.Add(-1)
		}
	}
}

// Forward implements broker.Fabric: it publishes msg on its live subject
// on the data connection, which has echo off, so this node's own plain
// subscriptions never get it back while its share groups can (they are on
// the other connection). The publish is asynchronous: it never waits for
// another node; a message that cannot be sent is dropped and counted.
// With one configured node and no share group watched it does nothing.
func (n *Node) Forward(msg *session.Message) {
	if !n.multi && n.count.shareWatches.Load() == 0 {
		return
	}
	now := time.Now()
	if msg.Expired(now) {
		return
	}
	subject, err := TopicSubject(msg.Topic)
	if err != nil {
		n.count.tooLong.Add(1)
		n.logDrop(&n.count.lastTooLong, "cluster: topic too long to forward, message dropped", "bytes", len(msg.Topic))
		return
	}
	body := appendEnvelope(make([]byte, 0, envFixed+24+len(n.cfg.Node)+len(msg.Origin)+len(msg.Payload)), msg, n.cfg.Node, n.incarnation, now)
	if len(body) > maxPayload {
		n.count.tooLarge.Add(1)
		n.logDrop(&n.count.lastTooLarge, "cluster: message too large to forward, dropped", "bytes", len(body))
		return
	}
	// The sequence number and the publish are taken together, so that
	// sequence numbers reach every node in order (see seenWindow).
	n.fwd.Lock()
	n.fwd.seq++
	setSeq(body, n.fwd.seq)
	err = n.data.Publish(subject, body)
	n.fwd.Unlock()
	if err != nil {
		n.count.forwardFailed.Add(1)
		n.logDrop(&n.count.lastForwardFailed, "cluster: message not forwarded", "err", err)
		return
	}
	n.count.forwarded.Add(1)
}

// dispatchPlain hands messages from the plain subscriptions to the broker,
// one copy per message: NATS delivers a message once per matching
// subscription, and a message matching several of this node's filters
// comes as that many copies. All plain subscriptions share one inbox, so
// the copies arrive in the order the server sent them, and the sequence
// number its origin gave it tells a copy from a new message.
func (n *Node) dispatchPlain() {
	seen := make(map[string]*seenWindow)
	n.dispatch(n.plainIn, func(m *nats.Msg) { n.receive(m, seen) })
}

// maxOrigins bounds the origins whose sequence windows a node keeps.
const maxOrigins = 1024

// receive delivers one message from a plain subscription (seen nil: a
// share group's, whose key it looks up).
func (n *Node) receive(m *nats.Msg, seen map[string]*seenWindow) {
	topic, err := SubjectTopic(m.Subject)
	var e envelope
	if err == nil {
		e, err = decodeEnvelope(topic, m.Data, time.Now())
	}
	if err != nil {
		n.count.malformed.Add(1)
		n.logDrop(&n.count.lastMalformed, "cluster: malformed message from another node dropped", "subject", shorten(m.Subject), "err", err)
		return
	}
	share := ""
	if seen != nil {
		w := seen[e.node]
		if w == nil || w.incarnation != e.incarnation {
			if w == nil && len(seen) >= maxOrigins {
				clear(seen)
			}
			w = &seenWindow{incarnation: e.incarnation}
			seen[e.node] = w
		}
		if !w.accept(e.seq) {
			n.count.duplicates.Add(1)
			return
		}
	} else {
		v, ok := n.shares.Load(m.Sub)
		if !ok {
			return // unwatched since
		}
		share = v.(string)
	}
	h := n.host()
	if h == nil {
		n.count.unbound.Add(1)
		return
	}
	n.count.received.Add(1)
	h.DeliverRemote(e.msg, share)
}

// dispatchShare hands messages from the share groups' queue
// subscriptions to the broker. A message matches at most one subject of a
// group's filter (FilterSubjects), and NATS gives it to one member per
// queue group: no copies.
func (n *Node) dispatchShare() {
	n.dispatch(n.shareIn, func(m *nats.Msg) { n.receive(m, nil) })
}

// windowBits is how far behind the newest sequence number of an origin a
// message may arrive and still be told apart from a copy.
const windowBits = 1024

// seenWindow is the sequence numbers seen from one origin incarnation:
// the newest, and a bitmap of the windowBits before it (an anti-replay
// window). A number seen before, or older than the window, is refused.
type seenWindow struct {
	incarnation uint64
	top         uint64
	bits        [windowBits / 64]uint64
}

// accept reports whether seq is new, and records it.
func (w *seenWindow) accept(seq uint64) bool {
	if seq > w.top {
		if seq-w.top >= windowBits {
			w.bits = [windowBits / 64]uint64{}
		} else {
			for s := w.top + 1; s < seq; s++ {
				w.bits[s%windowBits/64] &^= 1 << (s % 64)
			}
		}
		w.top = seq
		w.bits[seq%windowBits/64] |= 1 << (seq % 64)
		return true
	}
	if seq == 0 || w.top-seq >= windowBits {
		return false
	}
	bit := uint64(1) << (seq % 64)
	word := &w.bits[seq%windowBits/64]
	if *word&bit != 0 {
		return false
	}
	*word |= bit
	return true
}
