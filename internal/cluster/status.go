package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Status is one node's view of the cluster.
type Status struct {
	Name string // cluster name
	Node string // this node
	// Ready reports that the JetStream assets exist and the node follows
	// the message log (Claim works).
	Ready bool
	// MetaLeader is the JetStream meta leader's node, "" when none.
	MetaLeader string
	Nodes      []NodeStatus  // this node first, then the others by name
	Assets     []AssetStatus // the retained stream, the message log and the owners bucket
	Counters   Counters
}

// NodeStatus is one node as this node sees it.
type NodeStatus struct {
	Name      string
	Self      bool
	Connected bool      // a route to it is up (always true for Self)
	LastSeen  time.Time // last activity on its routes; zero when none
	// Connections is its number of client connections, -1 when unknown
	// (it did not answer, or its broker gives no figure).
	Connections int
}

// AssetStatus is one JetStream asset's replication.
type AssetStatus struct {
	Name     string
	Leader   string
	Replicas []ReplicaStatus // the followers
	Err      string          // why the figures are missing
}

// ReplicaStatus is one follower of an asset.
type ReplicaStatus struct {
	Name    string
	Current bool          // caught up
	Offline bool          // not seen recently
	Active  time.Duration // since it was last seen
	Lag     uint64        // operations behind
}

// Counters are the node's event counts since Start.
type Counters struct {
	Forwarded       uint64 // live messages sent to the cluster
	ForwardFailed   uint64 // not sent: the in-process connection refused them
	TooLong         uint64 // not sent: topic longer than 65535 bytes
	TooLarge        uint64 // not sent: body larger than the NATS payload limit
	Received        uint64 // live messages handed to the broker
	Duplicates      uint64 // copies of a message dropped (one per extra matching filter)
	SlowConsumer    uint64 // times an inbox overflowed (messages dropped by it or by NATS before it)
	InboxDropped    uint64 // messages dropped by full inboxes (by count or bytes, Config.InboxBytes)
	Malformed       uint64 // messages or requests from other nodes that did not decode
	Unbound         uint64 // messages received before Bind
	Retained        uint64 // retained changes published
	RetainFailed    uint64 // retained changes not replicated
	RetainApplied   uint64 // retained changes from other nodes applied
	KicksSent       uint64
	KicksReceived   uint64
	KicksMissed     uint64 // sessions another node claimed without its kick arriving here (a partition): closed once the claim was seen
	ReleaseDropped  uint64 // releases not written: too many waiting
	WatchFailed     uint64
	PurgesScheduled uint64 // tombstones this node wrote, queued for their purge
	Purged          uint64 // tombstones of cleared retained topics purged from the stream
	PurgeFailed     uint64 // purges that failed (the tombstone stays)
	PurgeDropped    uint64 // tombstones not queued for their purge: too many waiting
	Logged          uint64 // messages written to the message log (stored by a quorum)
	LogNoQuorum     uint64 // not logged: no quorum stored them within 5 s
	LogRetried      uint64 // writes sent again after an acknowledgement timed out (deduplicated by the stream) or no leader answered
	LogFull         uint64 // not logged: too many messages waiting for their quorum
	LogNotReady     uint64 // not logged: JetStream not ready
	LogClosed       uint64 // not logged: the node was closing
	LogTooLarge     uint64 // not logged: message or topic too large
	LogRefused      uint64 // not logged: JetStream refused the write
	LogPending      uint64 // gauge: messages written to the log, waiting for their quorum
	LogFollowed     uint64 // messages of the log handed to the broker (LogHost.DeliverLogged)
	FollowerResets  uint64 // times the follower started over after a gap (LogHost.LogFrom)
}

// counters are the live counts behind Counters.
type counters struct {
	forwarded, forwardFailed, tooLong, tooLarge        atomic.Uint64
	received, duplicates, slowConsumer, inboxDropped   atomic.Uint64
	malformed, unbound                                 atomic.Uint64
	retained, retainFailed, retainApplied              atomic.Uint64
	kicksSent, kicksReceived, releaseDropped           atomic.Uint64
	kicksMissed                                        atomic.Uint64
	watchFailed                                        atomic.Uint64
	purged, purgeFailed, purgeDropped, purgesScheduled atomic.Uint64
	logged, logNoQuorum, logFull, logNotReady          atomic.Uint64
	logClosed, logTooLarge, logRefused, logRetried     atomic.Uint64
	followed, followerResets                           atomic.Uint64
	shareWatches, logPending                           atomic.Int64

	// Unix nanoseconds of the last log line per kind of drop.
	lastTooLong, lastTooLarge, lastForwardFailed, lastMalformed, lastRetainFailed atomic.Int64
	lastInboxFull, lastPurgeFailed, lastLogFailed                                 atomic.Int64
	lastWillUnqueued, lastWillFailed                                              atomic.Int64
}

// dropLogEvery spaces the log lines of one kind of drop; the counters
// count every one.
const dropLogEvery = 10 * time.Second

// logDrop logs a drop at most once per dropLogEvery for last's kind.
func (n *Node) logDrop(last *atomic.Int64, msg string, args ...any) {
	now := time.Now().UnixNano()
	l := last.Load()
	if now-l < int64(dropLogEvery) || !last.CompareAndSwap(l, now) {
		return
	}
	n.log.Warn(msg, args...)
}

// Counters returns the node's event counts.
func (n *Node) Counters() Counters {
	c := &n.count
	out := Counters{
		Forwarded: c.forwarded.Load(), ForwardFailed: c.forwardFailed.Load(),
		TooLong: c.tooLong.Load(), TooLarge: c.tooLarge.Load(),
		Received: c.received.Load(), Duplicates: c.duplicates.Load(),
		SlowConsumer: c.slowConsumer.Load(), InboxDropped: c.inboxDropped.Load(),
		Malformed: c.malformed.Load(), Unbound: c.unbound.Load(),
		Retained: c.retained.Load(), RetainFailed: c.retainFailed.Load(), RetainApplied: c.retainApplied.Load(),
		KicksSent: c.kicksSent.Load(), KicksReceived: c.kicksReceived.Load(), KicksMissed: c.kicksMissed.Load(),
		ReleaseDropped: c.releaseDropped.Load(), WatchFailed: c.watchFailed.Load(),
		PurgesScheduled: c.purgesScheduled.Load(), Purged: c.purged.Load(), PurgeFailed: c.purgeFailed.Load(), PurgeDropped: c.purgeDropped.Load(),
		Logged: c.logged.Load(), LogNoQuorum: c.logNoQuorum.Load(), LogRetried: c.logRetried.Load(), LogFull: c.logFull.Load(), LogNotReady: c.logNotReady.Load(),
		LogClosed: c.logClosed.Load(), LogTooLarge: c.logTooLarge.Load(), LogRefused: c.logRefused.Load(),
		LogPending: uint64(max(c.logPending.Load(), 0)), LogFollowed: c.followed.Load(), FollowerResets: c.followerResets.Load(),
	}
	for _, in := range []*inbox{n.plainIn, n.shareIn} {
		out.InboxDropped += in.dropped.Load()
		out.SlowConsumer += in.overflows.Load()
	}
	n.mu.Lock()
	for _, w := range n.mu.watches {
		for _, sub := range w.subs {
			if d, err := sub.Dropped(); err == nil {
				out.InboxDropped += uint64(d)
			}
		}
	}
	n.mu.Unlock()
	return out
}

// Status returns this node's view of the cluster: the nodes it knows (by
// route and as JetStream peers), the meta leader, each asset's leader and
// replicas, and every node's connection count (asked of each node in
// parallel, within ctx).
func (n *Node) Status(ctx context.Context) (Status, error) {
	st := Status{Name: n.cfg.Name, Node: n.cfg.Node, Counters: n.Counters()}
	st.Ready = n.ready()
	nodes := map[string]*NodeStatus{}
	get := func(name string) *NodeStatus {
		if ns := nodes[name]; ns != nil {
			return ns
		}
		ns := &NodeStatus{Name: name, Connections: -1}
		nodes[name] = ns
		return ns
	}
	self := get(n.cfg.Node)
	self.Self, self.Connected, self.LastSeen, self.Connections = true, true, time.Now(), n.connections()
	if rz, err := n.srv.Routez(&server.RoutezOptions{}); err == nil {
		for _, r := range rz.Routes {
			if r.RemoteName == "" {
				continue
			}
			ns := get(r.RemoteName)
			ns.Connected = true
			if r.LastActivity.After(ns.LastSeen) {
				ns.LastSeen = r.LastActivity
			}
		}
	}
	if jsz, err := n.srv.Jsz(&server.JSzOptions{}); err == nil && jsz.Meta != nil {
		st.MetaLeader = jsz.Meta.Leader
		if st.MetaLeader != "" {
			get(st.MetaLeader)
		}
		for _, p := range jsz.Meta.Replicas {
			get(p.Name)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for name, ns := range nodes {
		if ns.Self || !ns.Connected {
			continue
		}
		wg.Go(func() {
			m, err := n.ctl.RequestWithContext(ctx, statusSubject(name), nil)
			var f nodeFigures
			if err != nil || json.Unmarshal(m.Data, &f) != nil {
				return
			}
			mu.Lock()
			ns.Connections = f.Connections
			mu.Unlock()
		})
	}
	for _, name := range assetNames {
		st.Assets = append(st.Assets, n.assetStatus(ctx, name))
	}
	wg.Wait()
	for _, ns := range nodes {
		st.Nodes = append(st.Nodes, *ns)
	}
	slices.SortFunc(st.Nodes, func(a, b NodeStatus) int {
		switch {
		case a.Self:
			return -1
		case b.Self:
			return 1
		}
		return cmpString(a.Name, b.Name)
	})
	return st, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// assetStatus returns the replication of stream name.
func (n *Node) assetStatus(ctx context.Context, name string) AssetStatus {
	as := AssetStatus{Name: name}
	s, err := n.js.Stream(ctx, name)
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = s.Info(ctx)
	}
	if err != nil {
		as.Err = err.Error()
		return as
	}
	if c := info.Cluster; c != nil {
		as.Leader = c.Leader
		for _, p := range c.Replicas {
			as.Replicas = append(as.Replicas, ReplicaStatus{Name: p.Name, Current: p.Current, Offline: p.Offline, Active: p.Active, Lag: p.Lag})
		}
	} else {
		as.Leader = n.cfg.Node // standalone: this node holds it
	}
	return as
}
