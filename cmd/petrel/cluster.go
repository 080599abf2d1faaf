package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
	"github.com/petrel-mqtt/petrel/internal/cluster"
	"github.com/petrel-mqtt/petrel/internal/config"
)

const clusterUsage = `petrel cluster: a running cluster, through a node's admin API.

Usage:
  petrel cluster status [flags]   nodes, leaders, replication lag, connections per node

Flags are petrel ctl's (petrel ctl -h): --url, --user, --password, --token,
--cacert, --json, --timeout. Operator principals only.
`

// clusterMain runs petrel cluster COMMAND: petrel ctl's "cluster" command
// under its own name.
func clusterMain(args []string, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "status" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, clusterUsage)
			return 0
		}
		fmt.Fprint(stderr, clusterUsage)
		return 2
	}
	return ctlMain(append([]string{"cluster"}, args[1:]...), environ, stdout, stderr)
}

// clusterStartWait bounds how long petrel serve waits for its cluster
// node before serving clients: the embedded server's start (its
// JetStream restores the node's copy of the message log first), and the
// replicated assets for a few seconds when enough nodes are up (else
// they are made in the background, and CONNECTs are refused until they
// exist).
const clusterStartWait = 5 * time.Minute

// startCluster starts this node's member of the cluster: nil without a
// cluster: section (no NATS at all). connections reports the broker's
// client connections to the other nodes (petrel cluster status).
func startCluster(cfg *config.Config, logger *slog.Logger, connections func() int) (*cluster.Node, error) {
	cl := cfg.Cluster
	if cl == nil {
		return nil, nil
	}
	tc, err := cfg.ClusterTLSConfig()
	if err != nil {
		return nil, err
	}
	cc := cluster.Config{Name: cl.Name, Node: cl.Node, Listen: cl.Listen, Advertise: cl.Advertise, Peers: cl.Peers, Replicas: cl.Replicas,
		DataDir: cfg.ClusterDataDir(), TLS: tc, Logger: logger, Connections: connections,
		InboxBytes: int(cl.InboxBytes), TombstoneTTL: cl.TombstoneTTL,
		MessageRetention: cl.MessageRetention, MessageBytes: clusterMessageBytes(cl.MessageBytes),
		WillAfter: cl.WillAfter}
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartWait)
	defer cancel()
	n, err := cluster.Start(ctx, cc)
	if err != nil {
		return nil, err
	}
	logger.Info("cluster node started", "cluster", cl.Name, "node", cl.Node, "listen", cl.Listen,
		"peers", len(cl.Peers), "data_dir", cc.DataDir, "tls", tc != nil)
	return n, nil
}

// clusterMessageBytes maps cluster.message_bytes (0: no bound, the
// default filled in by the configuration) to cluster.Config.MessageBytes
// (negative: no bound).
func clusterMessageBytes(b config.ByteSize) int64 {
	if b == 0 {
		return -1
	}
	return int64(b)
}

// clusterReport returns the admin API's view of n's status; nil for no
// node (GET /api/v1/cluster answers 404).
func clusterReport(n *cluster.Node) func(context.Context) (*api.Cluster, error) {
	if n == nil {
		return nil
	}
	return func(ctx context.Context) (*api.Cluster, error) {
		st, err := n.Status(ctx)
		if err != nil {
			return nil, err
		}
		return apiCluster(st), nil
	}
}

// apiCluster turns a node's Status into the admin API's document (lists
// never nil: the document says arrays).
func apiCluster(st cluster.Status) *api.Cluster {
	c := &api.Cluster{Name: st.Name, Node: st.Node, Ready: st.Ready, MetaLeader: st.MetaLeader,
		Nodes: make([]api.ClusterNode, 0, len(st.Nodes)), Assets: make([]api.ClusterAsset, 0, len(st.Assets))}
	for _, n := range st.Nodes {
		cn := api.ClusterNode{Name: n.Name, Self: n.Self, Connected: n.Connected, Connections: n.Connections}
		if !n.LastSeen.IsZero() {
			seen := n.LastSeen
			cn.LastSeen = &seen
		}
		c.Nodes = append(c.Nodes, cn)
	}
	for _, a := range st.Assets {
		ca := api.ClusterAsset{Name: a.Name, Leader: a.Leader, Error: a.Err, Replicas: make([]api.ClusterReplica, 0, len(a.Replicas))}
		for _, r := range a.Replicas {
			ca.Replicas = append(ca.Replicas, api.ClusterReplica{Name: r.Name, Current: r.Current, Offline: r.Offline,
				ActiveSeconds: r.Active.Seconds(), Lag: r.Lag})
		}
		c.Assets = append(c.Assets, ca)
	}
	k := st.Counters
	c.Counters = api.ClusterCounters{
		Forwarded:       k.Forwarded,
		ForwardFailed:   k.ForwardFailed,
		TooLong:         k.TooLong,
		TooLarge:        k.TooLarge,
		Received:        k.Received,
		Duplicates:      k.Duplicates,
		SlowConsumer:    k.SlowConsumer,
		InboxDropped:    k.InboxDropped,
		Malformed:       k.Malformed,
		Unbound:         k.Unbound,
		Retained:        k.Retained,
		RetainFailed:    k.RetainFailed,
		RetainApplied:   k.RetainApplied,
		KicksSent:       k.KicksSent,
		KicksReceived:   k.KicksReceived,
		KicksMissed:     k.KicksMissed,
		ReleaseDropped:  k.ReleaseDropped,
		WatchFailed:     k.WatchFailed,
		PurgesScheduled: k.PurgesScheduled,
		Purged:          k.Purged,
		PurgeFailed:     k.PurgeFailed,
		PurgeDropped:    k.PurgeDropped,
		Logged:          k.Logged,
		LogNoQuorum:     k.LogNoQuorum,
		LogRetried:      k.LogRetried,
		LogFull:         k.LogFull,
		LogNotReady:     k.LogNotReady,
		LogClosed:       k.LogClosed,
		LogTooLarge:     k.LogTooLarge,
		LogRefused:      k.LogRefused,
		LogPending:      k.LogPending,
		LogFollowed:     k.LogFollowed,
		FollowerResets:  k.FollowerResets,
	}
	return c
}
