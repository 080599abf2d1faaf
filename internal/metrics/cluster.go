package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mqtt/petrel/broker"
)

// ClusterSource is a cluster node: its counters and its own view of the
// cluster, both read from its memory (no request to another node at
// scrape). petrel serve adapts a *cluster.Node to it; metrics does not
// import the cluster (nor NATS).
type ClusterSource interface {
	ClusterCounters() ClusterCounters
	ClusterView() ClusterView
}

// ClusterCounters are the node's event counts since it started: the
// fields of cluster.Counters, in its order, so that one converts to the
// other (a field added there fails to compile until added here).
type ClusterCounters struct {
	Forwarded       uint64
	ForwardFailed   uint64
	TooLong         uint64
	TooLarge        uint64
	Received        uint64
	Duplicates      uint64
	SlowConsumer    uint64
	InboxDropped    uint64
	Malformed       uint64
	Unbound         uint64
	Retained        uint64
	RetainFailed    uint64
	RetainApplied   uint64
	KicksSent       uint64
	KicksReceived   uint64
	KicksMissed     uint64
	ReleaseDropped  uint64
	WatchFailed     uint64
	PurgesScheduled uint64
	Purged          uint64
	PurgeFailed     uint64
	PurgeDropped    uint64
	Logged          uint64
	LogNoQuorum     uint64
	LogRetried      uint64
	LogFull         uint64
	LogNotReady     uint64
	LogClosed       uint64
	LogTooLarge     uint64
	LogRefused      uint64
	LogPending      uint64 // a gauge
	LogFollowed     uint64
	FollowerResets  uint64
}

// ClusterView is the node's own view of the cluster (cluster.Local).
type ClusterView struct {
	Ready      bool // the replicated assets exist and the node follows the message log
	MetaLeader bool // this node is the JetStream meta leader
	Routes     int  // other nodes with a route up
	Assets     []ClusterAsset
}

// ClusterAsset is an asset this node holds a replica of.
type ClusterAsset struct {
	Name      string
	Leader    bool              // this node leads it
	Followers []ClusterFollower // known to the leader only
}

// ClusterFollower is a follower of an asset and how far behind it is.
type ClusterFollower struct {
	Name string
	Lag  uint64 // operations behind
}

// clusterCounter is one counter (or gauge) of cluster.Counters, with its label value
// when the family has one.
type clusterCounter struct {
	d     desc
	label string
	get   func(*ClusterCounters) uint64
}

func clusterCounterDesc(name, help string, labels ...string) desc {
	return newDesc(prometheus.CounterValue, "petrel_cluster_"+name, help, labels...)
}

var (
	dClusterForwarded     = clusterCounterDesc("forwarded_total", "Live messages this node sent to the other nodes.")
	dClusterForwardFailed = clusterCounterDesc("forward_failed_total", "Live messages not sent to the other nodes, by reason: refused (the in-process connection refused them), topic_too_long, too_large (these two also count retained changes not replicated).", "reason")
	dClusterReceived      = clusterCounterDesc("received_total", "Live messages from other nodes handed to the broker.")
	dClusterDuplicates    = clusterCounterDesc("duplicates_total", "Extra copies of a message from another node dropped (one per extra matching subscription).")
	dClusterSlowConsumer  = clusterCounterDesc("slow_consumer_total", "Times an inbox of messages from other nodes overflowed.")
	dClusterInboxDropped  = clusterCounterDesc("inbox_dropped_total", "Messages from other nodes dropped by full inboxes.")
	dClusterMalformed     = clusterCounterDesc("malformed_total", "Messages or requests from other nodes that did not decode.")
	dClusterUnbound       = clusterCounterDesc("unbound_total", "Messages from other nodes received before the broker was bound to the node.")
	dClusterRetained      = clusterCounterDesc("retained_total", "Retained changes this node published to the cluster.")
	dClusterRetainFailed  = clusterCounterDesc("retain_failed_total", "Retained changes not replicated.")
	dClusterRetainApplied = clusterCounterDesc("retain_applied_total", "Retained changes from other nodes applied to this node's broker.")
	dClusterKicksSent     = clusterCounterDesc("kicks_sent_total", "Kicks sent to the node holding a session taken over here.")
	dClusterKicksReceived = clusterCounterDesc("kicks_received_total", "Kicks received from other nodes.")
	dClusterKicksMissed   = clusterCounterDesc("kicks_missed_total", "Sessions held here that another node took over without its kick arriving (a partition): their connections closed once the claim was seen.")
	dClusterReleaseDrop   = clusterCounterDesc("release_dropped_total", "Session releases not written: too many waiting.")
	dClusterWatchFailed   = clusterCounterDesc("watch_failed_total", "Subscriptions this node could not open on the cluster.")
	dClusterPurgesQueued  = clusterCounterDesc("purges_scheduled_total", "Tombstones of cleared retained topics this node wrote, queued for their purge.")
	dClusterPurged        = clusterCounterDesc("purged_total", "Tombstones purged from the retained stream.")
	dClusterPurgeFailed   = clusterCounterDesc("purge_failed_total", "Purges of tombstones that failed.")
	dClusterPurgeDropped  = clusterCounterDesc("purge_dropped_total", "Tombstones not queued for their purge: too many waiting.")
	dClusterLogged        = clusterCounterDesc("logged_total", "Messages this node wrote to the message log (stored by a quorum of its replicas).")
	dClusterLogRetried    = clusterCounterDesc("log_retried_total", "Message log writes sent again, under the same message id and in call order, after their acknowledgement timed out (the stream keeps one copy) or no leader answered.")
	dClusterLogFailed     = clusterCounterDesc("log_failed_total", "Messages not written to the message log, by reason: no_quorum (not stored by a quorum within 5 s), full (too many waiting for their quorum), not_ready, closed, too_large, refused (JetStream refused the write).", "reason")
	dClusterLogPending    = newDesc(prometheus.GaugeValue, "petrel_cluster_log_pending", "Messages written to the message log and waiting for a quorum of its replicas.")
	dClusterLogFollowed   = clusterCounterDesc("log_followed_total", "Messages of the message log handed to this node's broker.")
	dClusterLogResets     = clusterCounterDesc("log_follower_resets_total", "Times this node's follower of the message log started over after a gap (messages discarded before it read them).")

	dClusterReady       = newDesc(prometheus.GaugeValue, "petrel_cluster_ready", "1 when the cluster's replicated assets exist and this node follows the message log (sessions can be claimed), else 0.")
	dClusterMetaLeader  = newDesc(prometheus.GaugeValue, "petrel_cluster_meta_leader", "1 when this node is the JetStream meta leader, else 0.")
	dClusterRoutes      = newDesc(prometheus.GaugeValue, "petrel_cluster_routes", "Other nodes this node has a route to.")
	dClusterAssetLeader = newDesc(prometheus.GaugeValue, "petrel_cluster_asset_leader", "1 when this node leads the asset's replication, 0 when it follows; only for the assets it holds a replica of.", "asset")
	dClusterAssetLag    = newDesc(prometheus.GaugeValue, "petrel_cluster_asset_lag", "Operations a follower of the asset is behind, as the asset's leader (this node) sees it.", "asset", "follower")
)

var clusterCounters = []clusterCounter{
	{dClusterForwarded, "", func(c *ClusterCounters) uint64 { return c.Forwarded }},
	{dClusterForwardFailed, "refused", func(c *ClusterCounters) uint64 { return c.ForwardFailed }},
	{dClusterForwardFailed, "topic_too_long", func(c *ClusterCounters) uint64 { return c.TooLong }},
	{dClusterForwardFailed, "too_large", func(c *ClusterCounters) uint64 { return c.TooLarge }},
	{dClusterReceived, "", func(c *ClusterCounters) uint64 { return c.Received }},
	{dClusterDuplicates, "", func(c *ClusterCounters) uint64 { return c.Duplicates }},
	{dClusterSlowConsumer, "", func(c *ClusterCounters) uint64 { return c.SlowConsumer }},
	{dClusterInboxDropped, "", func(c *ClusterCounters) uint64 { return c.InboxDropped }},
	{dClusterMalformed, "", func(c *ClusterCounters) uint64 { return c.Malformed }},
	{dClusterUnbound, "", func(c *ClusterCounters) uint64 { return c.Unbound }},
	{dClusterRetained, "", func(c *ClusterCounters) uint64 { return c.Retained }},
	{dClusterRetainFailed, "", func(c *ClusterCounters) uint64 { return c.RetainFailed }},
	{dClusterRetainApplied, "", func(c *ClusterCounters) uint64 { return c.RetainApplied }},
	{dClusterKicksSent, "", func(c *ClusterCounters) uint64 { return c.KicksSent }},
	{dClusterKicksReceived, "", func(c *ClusterCounters) uint64 { return c.KicksReceived }},
	{dClusterKicksMissed, "", func(c *ClusterCounters) uint64 { return c.KicksMissed }},
	{dClusterReleaseDrop, "", func(c *ClusterCounters) uint64 { return c.ReleaseDropped }},
	{dClusterWatchFailed, "", func(c *ClusterCounters) uint64 { return c.WatchFailed }},
	{dClusterPurgesQueued, "", func(c *ClusterCounters) uint64 { return c.PurgesScheduled }},
	{dClusterPurged, "", func(c *ClusterCounters) uint64 { return c.Purged }},
	{dClusterPurgeFailed, "", func(c *ClusterCounters) uint64 { return c.PurgeFailed }},
	{dClusterPurgeDropped, "", func(c *ClusterCounters) uint64 { return c.PurgeDropped }},
	{dClusterLogged, "", func(c *ClusterCounters) uint64 { return c.Logged }},
	{dClusterLogRetried, "", func(c *ClusterCounters) uint64 { return c.LogRetried }},
	{dClusterLogFailed, "no_quorum", func(c *ClusterCounters) uint64 { return c.LogNoQuorum }},
	{dClusterLogFailed, "full", func(c *ClusterCounters) uint64 { return c.LogFull }},
	{dClusterLogFailed, "not_ready", func(c *ClusterCounters) uint64 { return c.LogNotReady }},
	{dClusterLogFailed, "closed", func(c *ClusterCounters) uint64 { return c.LogClosed }},
	{dClusterLogFailed, "too_large", func(c *ClusterCounters) uint64 { return c.LogTooLarge }},
	{dClusterLogFailed, "refused", func(c *ClusterCounters) uint64 { return c.LogRefused }},
	{dClusterLogPending, "", func(c *ClusterCounters) uint64 { return c.LogPending }},
	{dClusterLogFollowed, "", func(c *ClusterCounters) uint64 { return c.LogFollowed }},
	{dClusterLogResets, "", func(c *ClusterCounters) uint64 { return c.FollowerResets }},
}

// clusterDescs are the cluster's families, exported with a cluster node
// only.
var clusterDescs = func() []desc {
	var ds []desc
	for _, c := range clusterCounters {
		if len(ds) == 0 || ds[len(ds)-1].name != c.d.name {
			ds = append(ds, c.d)
		}
	}
	return append(ds, dClusterReady, dClusterMetaLeader, dClusterRoutes, dClusterAssetLeader, dClusterAssetLag)
}()

// collectCluster exports the node's counters and its own view. The
// labels are bounded by the configuration: two assets, and followers
// among the configured nodes.
func collectCluster(ch chan<- prometheus.Metric, src ClusterSource) {
	emit := func(d desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.Desc, d.kind, v, labels...)
	}
	k := src.ClusterCounters()
	for _, c := range clusterCounters {
		if c.label == "" {
			emit(c.d, float64(c.get(&k)))
		} else {
			emit(c.d, float64(c.get(&k)), c.label)
		}
	}
	l := src.ClusterView()
	emit(dClusterReady, bit(l.Ready))
	emit(dClusterMetaLeader, bit(l.MetaLeader))
	emit(dClusterRoutes, float64(l.Routes))
	for _, a := range l.Assets {
		emit(dClusterAssetLeader, bit(a.Leader), a.Name)
		for _, f := range a.Followers {
			emit(dClusterAssetLag, float64(f.Lag), a.Name, f.Name)
		}
	}
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// The broker's own work for the cluster's message log and session journal
// (broker.ClusterStats), exported with a cluster node only.
var (
	dClusterAdopted     = clusterCounterDesc("sessions_adopted_total", "Persistent sessions this node adopted from the cluster's session journal when their client connected here.")
	dClusterAdoptFailed = clusterCounterDesc("adoptions_failed_total", "CONNECTs refused (server unavailable) because reading or catching up their session failed.")
	dClusterCaughtUp    = clusterCounterDesc("caught_up_total", "Deliveries adoptions took from the message log after the session's last journaled one.")
	dClusterPubRefused  = clusterCounterDesc("publishes_refused_total", "QoS 1/2 publishes of this node's clients refused because the message log did not store them (5.0: 0x80; 3.x: connection closed).")
	dClusterUnlogged    = clusterCounterDesc("unlogged_total", "Wills and admin publishes the message log did not store within 30 s of tries (other nodes' sessions miss them).")
	dClusterLogSkipped  = clusterCounterDesc("log_skipped_total", "Messages of the log this node's follower skipped (its persistent sessions miss them).")
	dClusterRetries     = clusterCounterDesc("journal_retries_total", "Journal writes of the log's deliveries tried again after the cluster refused them (no quorum).")
)

var clusterBrokerDescs = []desc{dClusterAdopted, dClusterAdoptFailed, dClusterCaughtUp, dClusterPubRefused, dClusterUnlogged, dClusterLogSkipped, dClusterRetries}

// collectClusterBroker exports the broker's cluster counters.
func collectClusterBroker(ch chan<- prometheus.Metric, s broker.ClusterStats) {
	for _, m := range []struct {
		d desc
		v uint64
	}{
		{dClusterAdopted, s.Adopted}, {dClusterAdoptFailed, s.AdoptFailed}, {dClusterCaughtUp, s.CaughtUp},
		{dClusterPubRefused, s.LogRefused}, {dClusterUnlogged, s.LogUnwaited}, {dClusterLogSkipped, s.LogSkipped},
		{dClusterRetries, s.JournalRetries},
	} {
		ch <- prometheus.MustNewConstMetric(m.d.Desc, m.d.kind, float64(m.v))
	}
}
