package metrics

import "github.com/prometheus/client_golang/prometheus"

// ClusterWillSource is a ClusterSource that also keeps the cluster's will
// registry (the wills of a dead node's clients): petrel serve's cluster
// node is one.
type ClusterWillSource interface {
	ClusterWills() ClusterWillCounters
}

// ClusterWillCounters are the will registry's event counts: the fields of
// cluster.WillCounters, in its order, so that one converts to the other.
type ClusterWillCounters struct {
	Kept        uint64
	Dropped     uint64
	Reaped      uint64
	Skipped     uint64
	ReapFailed  uint64
	Unqueued    uint64
	Unheld      uint64
	WriteFailed uint64
	NodesReaped uint64
}

var (
	dClusterWills          = clusterCounterDesc("wills_total", "Will registry events, by event: kept (a will recorded for a connection on this node), dropped (removed when its connection ended here), published (a dead connection's will handed to the broker), skipped (a dead connection's will not published: its client connected again, or its session ended), unqueued (not recorded: 64 MiB waiting to be written), unheld (not recorded: the session was taken over meanwhile), write_failed (not written or not removed: JetStream refused or did not answer).", "event")
	dClusterWillReapings   = clusterCounterDesc("will_reapings_total", "Reapings of wills this node completed: of a node taken for dead, or of its own previous life at start.")
	dClusterWillReapFailed = clusterCounterDesc("will_reap_failed_total", "Reapings of wills stopped by an error (tried again).")
)

var clusterWillCounters = []struct {
	label string
	get   func(*ClusterWillCounters) uint64
}{
	{"kept", func(c *ClusterWillCounters) uint64 { return c.Kept }},
	{"dropped", func(c *ClusterWillCounters) uint64 { return c.Dropped }},
	{"published", func(c *ClusterWillCounters) uint64 { return c.Reaped }},
	{"skipped", func(c *ClusterWillCounters) uint64 { return c.Skipped }},
	{"unqueued", func(c *ClusterWillCounters) uint64 { return c.Unqueued }},
	{"unheld", func(c *ClusterWillCounters) uint64 { return c.Unheld }},
	{"write_failed", func(c *ClusterWillCounters) uint64 { return c.WriteFailed }},
}

// clusterWillDescs are the will registry's families, exported with a
// ClusterWillSource only.
var clusterWillDescs = []desc{dClusterWills, dClusterWillReapings, dClusterWillReapFailed}

// collectClusterWills exports the will registry's counters.
func collectClusterWills(ch chan<- prometheus.Metric, src ClusterWillSource) {
	emit := func(d desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.Desc, d.kind, float64(v), labels...)
	}
	k := src.ClusterWills()
	for _, c := range clusterWillCounters {
		emit(dClusterWills, c.get(&k), c.label)
	}
	emit(dClusterWillReapings, k.NodesReaped)
	emit(dClusterWillReapFailed, k.ReapFailed)
}
