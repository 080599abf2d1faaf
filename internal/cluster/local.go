package cluster

import (
	"slices"

	"github.com/nats-io/nats-server/v2/server"
)

// Local is this node's own view of the cluster, read from the embedded
// server's state in memory: no request leaves the node, so it is cheap
// enough for every metrics scrape (Status asks the other nodes).
type Local struct {
	// Ready reports that the JetStream assets exist and the node follows
	// the message log (Claim works).
	Ready bool
	// MetaLeader reports that this node is the JetStream meta leader;
	// a single node (JetStream standalone) always is.
	MetaLeader bool
	// Routes is the number of other nodes this node has a route to
	// (pooled routes to one node count once).
	Routes int
	// Assets are the assets (the retained stream, the message log, the
	// owners bucket) this node holds a replica of, by name.
	Assets []LocalAsset
}

// LocalAsset is one asset as its replica on this node sees it.
type LocalAsset struct {
	Name string
	// Leader reports that this node leads the asset's replication.
	Leader bool
	// Followers are the other replicas with their lag, known to the
	// leader only: empty on a follower and on a single node.
	Followers []ReplicaStatus
}

// assetNames are the JetStream streams behind the node's assets.
var assetNames = []string{retainedStream, logStream, sessionsStream, "KV_" + ownersBucket}

// Local returns the node's own view of the cluster (see Local). It takes
// no Petrel lock; the embedded server takes its own, briefly.
func (n *Node) Local() Local {
	var l Local
	l.Ready = n.ready()
	if rz, err := n.srv.Routez(&server.RoutezOptions{}); err == nil {
		var peers []string
		for _, r := range rz.Routes {
			if r.RemoteName != "" && !slices.Contains(peers, r.RemoteName) {
				peers = append(peers, r.RemoteName)
			}
		}
		l.Routes = len(peers)
	}
	jsz, err := n.srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return l
	}
	// Without routes JetStream runs standalone: no meta group, and this
	// node holds everything.
	l.MetaLeader = jsz.Meta == nil && !n.multi || jsz.Meta != nil && jsz.Meta.Leader == n.cfg.Node
	for _, acc := range jsz.AccountDetails {
		for _, sd := range acc.Streams {
			if !slices.Contains(assetNames, sd.Name) {
				continue
			}
			if slices.ContainsFunc(l.Assets, func(a LocalAsset) bool { return a.Name == sd.Name }) {
				continue
			}
			a := LocalAsset{Name: sd.Name}
			if ci := sd.Cluster; ci != nil {
				a.Leader = ci.Leader == n.cfg.Node
				if a.Leader {
					a.Followers = followers(ci.Replicas, n.cfg.Node)
				}
			}
			l.Assets = append(l.Assets, a)
		}
	}
	slices.SortFunc(l.Assets, func(a, b LocalAsset) int { return cmpString(a.Name, b.Name) })
	return l
}

// followers returns the replicas other than self, one per name: a node
// that came back with a new identity can stay listed under its old one
// too until JetStream drops it; the larger lag is kept.
func followers(replicas []*server.PeerInfo, self string) []ReplicaStatus {
	var out []ReplicaStatus
	for _, p := range replicas {
		if p == nil || p.Name == self {
			continue
		}
		r := ReplicaStatus{Name: p.Name, Current: p.Current, Offline: p.Offline, Active: p.Active, Lag: p.Lag}
		i := slices.IndexFunc(out, func(o ReplicaStatus) bool { return o.Name == p.Name })
		switch {
		case i < 0:
			out = append(out, r)
		case r.Lag > out[i].Lag:
			out[i] = r
		}
	}
	return out
}
