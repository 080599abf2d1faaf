package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/petrel-mqtt/petrel/internal/ratelog"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// The broker's side of a cluster (Options.Fabric, fabric.go): what it
// hands the fabric (forward, retained changes, claims) and the
// FabricHost methods the fabric calls. With no fabric none of this runs.

var _ FabricHost = (*Broker)(nil)

// claimTimeout bounds how long a CONNECT waits for the cluster to record
// that its session is now on this node (Fabric.Claim).
const claimTimeout = 2 * time.Second

// errClaimLost refuses a CONNECT whose session another node took over
// while it was being claimed here: the newer CONNECT, there, wins.
var errClaimLost = errors.New("broker: the session was taken over by another node while connecting")

// isSysTopic reports whether name is one of the broker's own $SYS topics,
// which each node keeps for itself and never shares.
func isSysTopic(name string) bool { return strings.HasPrefix(name, "$SYS") }

// forward hands msg, published on this node and delivered locally, to the
// fabric for the other nodes (and for the share groups, which the fabric
// balances across all nodes, this one included). Never $SYS.
func (b *Broker) forward(msg *session.Message) {
	if b.fabric != nil && !isSysTopic(msg.Topic) {
		b.fabric.Forward(msg)
	}
}

// keepShare keeps of ents, in place, the subscriptions of share group
// share (a subscriber's shareKey), or the plain ones for share "". With a
// fabric, a message published here is delivered by the local trie to the
// plain subscriptions only, and to share groups by the fabric, which picks
// one node per group and message (DeliverRemote there, or here).
func keepShare(ents []entry, share string) []entry {
	out := ents[:0]
	for _, e := range ents {
		if e.Value.shareKey == share {
			out = append(out, e)
		}
	}
	clear(ents[len(out):])
	return out
}

// DeliverRemote delivers msg, published on another node (or, for a share
// group, on any node), to the local plain subscriptions matching its
// topic, each session once [MQTT-3.3.5-1], or, for share != "", to one
// local member of that share group. It never forwards msg again. QoS 1/2
// deliveries to persistent sessions are written to the store before they
// are queued, not synced: what the fabric carries is at most once.
func (b *Broker) DeliverRemote(msg *session.Message, share string) {
	if isSysTopic(msg.Topic) { // each node has its own
		return
	}
	rt := routingPool.Get().(*routing)
	defer rt.release()
	rt.inbound = true
	ep := entryPool.Get().(*[]entry)
	ents := keepShare(b.subs.Match(msg.Topic, (*ep)[:0]), share)
	if len(ents) == 0 && share != "" {
		// The group's last member here left since the fabric picked
		// this node.
		b.countDrop(dropNoShareMember, 1)
	}
	b.deliverEntries(rt, msg, ents)
	clear(ents)
	*ep = ents[:0]
	entryPool.Put(ep)
	if err := b.writeStaged(rt, nil, false); err != nil {
		return // logged and counted by commit; nothing is queued
	}
	b.queueStaged(rt)
}

// ApplyRetained sets, or for an empty payload clears, the retained message
// of msg's topic as another node changed it, in the retained index and the
// store (not synced: the cluster holds it), without handing it to the
// fabric again.
func (b *Broker) ApplyRetained(msg *session.Message) {
	if isSysTopic(msg.Topic) {
		return
	}
	if b.store != nil {
		// A failed write is logged and counted by commit; the index still
		// follows the cluster.
		_ = b.commitOne(retainOp(msg), false)
	}
	b.setRetained(msg)
}

// KickRemote ends this node's hold on session key, which another node has
// taken over: its connection, if any, is sent DISCONNECT 0x8E (5.0) and
// closed [MQTT-3.1.4-2], its end awaited (bounded), and the session is
// discarded here with its subscriptions, queue and delayed will (the
// other node owns it now; its state is not carried over yet). A CONNECT
// of key still claiming it here is refused.
func (b *Broker) KickRemote(key string) {
	tenant, client := SplitSessionKey(key)
	b.mu.Lock()
	for _, cc := range b.mu.claiming[key] {
		cc.remoteKicked = true
	}
	c := b.mu.clients[key]
	if c != nil {
		c.remoteKicked = true
	}
	b.mu.Unlock()
	if c != nil {
		b.log.Info("client id taken over by another node", AuditKey, AuditTakeover, "tenant", tenant, "client", client,
			"remote", c.remoteString())
		c.closeWith(packet.SessionTakenOver, reasonTakeover) // [MQTT-3.1.4-2]
		select {
		case <-c.finishedChan():
		case <-time.After(takeoverWait):
			b.log.Error("connection taken over by another node did not finish", "tenant", tenant, "client", client)
		}
	}
	b.mu.Lock()
	s := b.mu.sessions[key]
	if s == nil || b.mu.clients[key] != nil {
		b.mu.Unlock()
		return
	}
	if t := b.mu.expiries[s]; t != nil {
		t.Stop()
		delete(b.mu.expiries, s)
	}
	b.dropSessionLocked(s)
	if w := b.mu.wills[key]; w != nil {
		// The session lives on on the other node: its delayed will is
		// not sent [MQTT-3.1.3-9].
		w.timer.Stop()
		delete(b.mu.wills, key)
	}
	b.mu.Unlock()
	b.dropWill(key) // the other node keeps its own connection's will
	b.syncInterest()
	if b.journal != nil {
		// The session lives on in the cluster's journal, the other
		// node's now: nothing is deleted.
		b.journal.Forget(key)
		return
	}
	if s.Persistent() {
		// A failed write is logged and counted by commit; the session
		// would come back at restart, and be claimed again then.
		_ = b.commitOne(Op{Kind: OpDeleteSession, ClientID: key}, false)
	}
}

// claim records with the fabric that c's session is now on this node,
// which has the node that held it close its connection; it waits at most
// claimTimeout. While it runs, a KickRemote of the key marks c, and
// attach then refuses it (errClaimLost).
func (c *conn) claim() error {
	b := c.b
	b.mu.Lock()
	b.mu.claiming[c.key] = append(b.mu.claiming[c.key], c)
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	err := b.fabric.Claim(ctx, c.key)
	if err != nil {
		b.mu.Lock()
		b.unclaimLocked(c)
		b.mu.Unlock()
		b.refusals.Log(slog.LevelWarn, ratelog.AddrKey(c.remoteAddr), "cluster: session claim failed; CONNECT refused",
			"tenant", c.id.Tenant, "client", c.clientID, "remote", c.remoteString(), "err", err)
		return fmt.Errorf("cluster unavailable: claiming the session failed: %w", err)
	}
	return nil
}

// unclaimLocked ends c's claim (claim) and reports whether another node
// took the session over meanwhile. Broker.mu is held.
func (b *Broker) unclaimLocked(c *conn) bool {
	l := b.mu.claiming[c.key]
	if i := slices.Index(l, c); i >= 0 {
		if l = slices.Delete(l, i, i+1); len(l) == 0 {
			delete(b.mu.claiming, c.key)
		} else {
			b.mu.claiming[c.key] = l
		}
	}
	return c.remoteKicked
}

// releaseUnheld tells the fabric that key is not on this node after a
// CONNECT that claimed it was refused, unless a session of key is still
// held here (online, offline or being claimed).
func (b *Broker) releaseUnheld(key string) {
	b.mu.Lock()
	held := b.mu.sessions[key] != nil || b.mu.clients[key] != nil || len(b.mu.claiming[key]) > 0
	b.mu.Unlock()
	if !held {
		b.fabric.Release(key)
	}
}
