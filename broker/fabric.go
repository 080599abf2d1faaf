package broker

import (
	"context"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// Fabric links this node's broker to the other nodes of a cluster.
// internal/cluster implements it on embedded NATS (routes and JetStream).
// Options.Fabric nil means one node: none of the calls below is made, and
// the single-node path pays nothing for them.
//
// The broker keeps serving its local clients itself: a publish is always
// matched against the local trie and delivered to local subscribers
// without a round trip through the fabric; the fabric only carries what
// other nodes want. Every method must be safe for concurrent use and must
// never block on another node for longer than its context allows: the
// broker calls them from connection goroutines.
//
// Tenant boundary: the fabric carries every tenant's messages between
// nodes of one cluster, which are one trust domain (routes are
// authenticated with cluster.tls). What a client receives is decided on
// the node it is connected to, by the same authorization as a local
// publish (its subscriptions were authorized at SUBSCRIBE, deny filters
// are applied at delivery); share groups are keyed per tenant.
type Fabric interface {
	// Bind gives the fabric the broker it serves, before the broker
	// serves its first connection. Messages and requests from other nodes
	// reach the broker through h.
	Bind(h FabricHost) error

	// Watch tells the fabric that this node gained its first local
	// subscription to filter (an MQTT filter, $share prefix removed) for
	// share group share (the broker's key of the group, made of tenant,
	// group name and filter, so one per MQTT share group; any bytes, NUL
	// included, opaque to the fabric; "" for a plain subscription);
	// Unwatch that it lost the last one. Matching messages
	// published on other nodes then arrive through FabricHost.DeliverRemote.
	// Calls for one (filter, share) alternate, starting with Watch. The
	// broker makes them with none of its locks held.
	Watch(filter, share string)
	Unwatch(filter, share string)

	// Forward sends msg, published on this node (by a client, a will or
	// the admin API), to the other nodes that have interest in its topic,
	// after the broker has delivered it locally. It is never called for a
	// message that came from the fabric, nor for $SYS topics (each node
	// has its own). Shared subscriptions: when the broker has a fabric it
	// leaves the delivery to every share group to the fabric, which picks
	// one node per group and message (this node included).
	Forward(msg *session.Message)

	// Retain replicates a retained message set on this node (an empty
	// payload clears the topic). Other nodes' changes arrive through
	// FabricHost.ApplyRetained.
	Retain(msg *session.Message)

	// Claim records that session key (SessionKey(tenant, client id)) is
	// now connected on this node, with a compare-and-set on its record,
	// and has the node that held it before close that connection
	// (FabricHost.KickRemote there, when it is another node)
	// [MQTT-3.1.4-2]. It returns once that node answered or is known to
	// be gone, or with ctx's error; the broker then refuses the CONNECT
	// (server unavailable).
	Claim(ctx context.Context, key string) error
	// Release tells the fabric that session key ended on this node (a
	// clean session disconnected, or the session expired or was deleted).
	Release(key string)
}

// FabricHost is what a Fabric calls on the broker it serves. *Broker
// implements it.
type FabricHost interface {
	// DeliverRemote delivers msg, published on another node, to the local
	// subscribers of share group share (one member of it) or, for share
	// "", to the local plain subscriptions matching its topic, each
	// session at most once [MQTT-3.3.5-1]. It never forwards msg again and
	// never blocks on a subscriber. The broker keeps msg (queues share
	// it): the fabric must not change it afterwards.
	DeliverRemote(msg *session.Message, share string)
	// ApplyRetained sets (or, for an empty payload, clears) a retained
	// message changed on another node, without forwarding it again.
	ApplyRetained(msg *session.Message)
	// KickRemote closes this node's connection of session key, which
	// another node has taken over (DISCONNECT 0x8E for 5.0) [MQTT-3.1.4-2].
	KickRemote(key string)
}

// FabricLog is implemented by a Fabric that keeps the cluster's message
// log: with it (and a SessionJournal store) a QoS 1/2 publish is
// acknowledged only once a quorum of the cluster stored it, and the
// persistent sessions of every node get their QoS 1/2 deliveries from the
// log, in its order, whatever node the publisher was on (fabric_log.go).
type FabricLog interface {
	// LogOnce writes msg, published on this node, to the log and calls
	// done once, with the log's sequence of msg once a quorum stored it,
	// or with an error. Calls made by one goroutine are stored in call
	// order. It never blocks on the network. With a write id (id != ""),
	// the log keeps one copy of the messages written under it within its
	// duplicate window, whichever node wrote them: dup then reports that
	// the copy kept is an earlier write's (seq is that copy's).
	LogOnce(msg *session.Message, id string, done func(seq uint64, dup bool, err error))
	// ReadLog calls fn in sequence order for each message of the log
	// after sequence after whose topic matches one of filters, up to the
	// log's last sequence when it started, which it returns.
	ReadLog(ctx context.Context, after uint64, filters []string, fn func(seq uint64, msg *session.Message) error) (last uint64, err error)
}

// LogHost is what a FabricLog's follower calls on the broker, from one
// goroutine, in the log's order. *Broker implements it.
type LogHost interface {
	// LogFrom says that the next message handed over comes after seq.
	LogFrom(seq uint64)
	// DeliverLogged hands over the log's message seq (nil: a message
	// that could not be read, position only); here says that this node
	// wrote it (in its current life).
	DeliverLogged(msg *session.Message, seq uint64, here bool)
}

// SessionJournal is implemented by a Store whose persistent sessions the
// nodes of a cluster share: a session is adopted from it by the node its
// client connects to (adopt.go), never loaded at start.
type SessionJournal interface {
	// LoadSession reports session key's records to r as Store.Load does
	// for one session; found is false when there is none.
	LoadSession(ctx context.Context, key string, r Restorer) (found bool, err error)
	// Forget drops what the store keeps in memory of session key, which
	// another node now holds (nothing is deleted).
	Forget(key string)
}

// WillKeeper is implemented by a Fabric that publishes the wills of the
// clients of a node that died (wills.go): while a connection with a will
// is open here, or its 5.0 will waits out its delay here, the cluster
// holds a copy.
type WillKeeper interface {
	// KeepWill records, replicated, the will of session key's connection
	// on this node (rec: ClientID, Version, ExpiryInterval, Will,
	// WillDelay, Holder), replacing an earlier one of key. It does not
	// block on the network.
	KeepWill(key string, rec *StoredSession)
	// DropWill removes what this node recorded for key; never a later
	// KeepWill of key on another node.
	DropWill(key string)
}

// OrphanWillHost is what a WillKeeper calls on the broker of the node that
// publishes a dead node's client's will. *Broker implements it.
type OrphanWillHost interface {
	// SendOrphanWill publishes the will of rec, authorized again for its
	// holder, after its delay counted from now.
	SendOrphanWill(rec *StoredSession)
}
