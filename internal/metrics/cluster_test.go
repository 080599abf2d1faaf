package metrics

import (
	"strings"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
)

// fakeCluster is a ClusterSource with fixed figures (petrel serve's
// tests read a real node: cmd/petrel TestServeClusterMetrics,
// TestClusterThreeProcesses).
type fakeCluster struct {
	k ClusterCounters
	v ClusterView
}

func (f fakeCluster) ClusterCounters() ClusterCounters { return f.k }
func (f fakeCluster) ClusterView() ClusterView         { return f.v }

// TestClusterSeries: with a cluster source every petrel_cluster_* family
// is exported; each follower of an asset this node leads is one lag
// series labelled by asset and follower; an asset it follows is leader 0
// with no lag series; each counter goes to its own family and reason.
// Without a source no petrel_cluster_* series exists.
func TestClusterSeries(t *testing.T) {
	b, _ := startBroker(t, broker.Options{})
	src := fakeCluster{
		k: ClusterCounters{Forwarded: 11, ForwardFailed: 2, TooLong: 3, TooLarge: 4, InboxDropped: 5, PurgeDropped: 6,
			Logged: 21, LogNoQuorum: 22, LogFull: 23, LogPending: 24, LogFollowed: 25, FollowerResets: 26},
		v: ClusterView{Ready: true, Routes: 2, Assets: []ClusterAsset{
			{Name: "KV_PETREL_OWNERS"},
			{Name: "PETREL_RETAINED", Leader: true, Followers: []ClusterFollower{{Name: "n2", Lag: 7}, {Name: "n3"}}},
		}},
	}
	reg, err := New(b, Options{Cluster: src})
	if err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, Handler(reg))
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"petrel_cluster_asset_leader", []string{"asset", "KV_PETREL_OWNERS"}, 0},
		{"petrel_cluster_asset_leader", []string{"asset", "PETREL_RETAINED"}, 1},
		{"petrel_cluster_asset_lag", []string{"asset", "PETREL_RETAINED", "follower", "n2"}, 7},
		{"petrel_cluster_asset_lag", []string{"asset", "PETREL_RETAINED", "follower", "n3"}, 0},
		{"petrel_cluster_routes", nil, 2},
		{"petrel_cluster_meta_leader", nil, 0},
		{"petrel_cluster_forwarded_total", nil, 11},
		{"petrel_cluster_forward_failed_total", []string{"reason", "refused"}, 2},
		{"petrel_cluster_forward_failed_total", []string{"reason", "topic_too_long"}, 3},
		{"petrel_cluster_forward_failed_total", []string{"reason", "too_large"}, 4},
		{"petrel_cluster_inbox_dropped_total", nil, 5},
		{"petrel_cluster_purge_dropped_total", nil, 6},
		{"petrel_cluster_logged_total", nil, 21},
		{"petrel_cluster_log_failed_total", []string{"reason", "no_quorum"}, 22},
		{"petrel_cluster_log_failed_total", []string{"reason", "full"}, 23},
		{"petrel_cluster_log_failed_total", []string{"reason", "closed"}, 0},
		{"petrel_cluster_log_pending", nil, 24},
		{"petrel_cluster_log_followed_total", nil, 25},
		{"petrel_cluster_log_follower_resets_total", nil, 26},
	} {
		if v, ok := value(fams, w.name, w.labels...); !ok || v != w.want {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, v, ok, w.want)
		}
	}
	if n := len(fams["petrel_cluster_asset_lag"].GetMetric()); n != 2 {
		t.Errorf("%d lag series, want 2 (the followers of the asset this node leads)", n)
	}
	for _, d := range append(clusterDescs, clusterBrokerDescs...) {
		if fams[d.name] == nil {
			t.Errorf("family %s missing with a cluster source", d.name)
		}
	}

	plain, err := New(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name := range scrape(t, Handler(plain)) {
		if strings.HasPrefix(name, "petrel_cluster_") {
			t.Errorf("%s exported without a cluster source", name)
		}
	}
}
