package metrics

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/cluster"
	"github.com/petrel-mqtt/petrel/packet"
)

// startNode starts a one-node cluster (JetStream standalone, no route
// listener) and closes it when the test ends, after the broker bound to
// it (cleanups run last registered first).
func startNode(t *testing.T) *cluster.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// No peers: the node opens no listener, the address is only checked.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	n, err := cluster.Start(ctx, cluster.Config{Name: "metrics", Node: "m1", Listen: listen, Replicas: 1, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("closing the node: %v", err)
		}
	})
	return n
}

// TestClusterSeries: with a cluster node every petrel_cluster_* family is
// exported (the lag only with followers, which a single node has none
// of), read from the node: it is ready, the meta leader, leads both
// assets, has no routes, and counts the retained change a client's
// publish replicated; without a node no petrel_cluster_* series exists.
func TestClusterSeries(t *testing.T) {
	node := startNode(t)
	b, addr := startBroker(t, broker.Options{Fabric: node})
	reg, err := New(b, Options{Cluster: node})
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(reg)
	eventuallyValue(t, h, 1, "petrel_cluster_ready")

	pub := connect(t, addr, &packet.Connect{Version: packet.V311, ClientID: "pub", Username: "a", CleanStart: true})
	pub.Send(&packet.Publish{Topic: "site/7/state", Retain: true, Payload: []byte("on")})
	eventuallyValue(t, h, 1, "petrel_cluster_retained_total")

	fams := scrape(t, h)
	for _, d := range clusterDescs {
		if d.name != "petrel_cluster_asset_lag" && fams[d.name] == nil {
			t.Errorf("family %s missing with a cluster node", d.name)
		}
	}
	if f := fams["petrel_cluster_asset_lag"]; f != nil {
		t.Errorf("a single node exports follower lag: %v", f.Metric)
	}
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"petrel_cluster_meta_leader", nil, 1},
		{"petrel_cluster_routes", nil, 0},
		{"petrel_cluster_asset_leader", []string{"asset", "PETREL_RETAINED"}, 1},
		{"petrel_cluster_asset_leader", []string{"asset", "KV_PETREL_OWNERS"}, 1},
		{"petrel_cluster_retain_failed_total", nil, 0},
		{"petrel_cluster_forward_failed_total", []string{"reason", "too_large"}, 0},
		{"petrel_cluster_inbox_dropped_total", nil, 0},
	} {
		if v, ok := value(fams, w.name, w.labels...); !ok || v != w.want {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, v, ok, w.want)
		}
	}
	if n := len(fams["petrel_cluster_forward_failed_total"].GetMetric()); n != 3 {
		t.Errorf("petrel_cluster_forward_failed_total has %d series, want 3 (refused, topic_too_long, too_large)", n)
	}

	plain, err := New(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name := range scrape(t, Handler(plain)) {
		if strings.HasPrefix(name, "petrel_cluster_") {
			t.Errorf("%s exported without a cluster node", name)
		}
	}
}

// fakeCluster is a ClusterSource with fixed figures.
type fakeCluster struct {
	k cluster.Counters
	l cluster.Local
}

func (f fakeCluster) Counters() cluster.Counters { return f.k }
func (f fakeCluster) Local() cluster.Local       { return f.l }

// TestClusterLagSeries: each follower of an asset this node leads is one
// lag series labelled by asset and follower; an asset it follows is
// leader 0 with no lag series; each counter goes to its own family and
// reason.
func TestClusterLagSeries(t *testing.T) {
	b, _ := startBroker(t, broker.Options{})
	src := fakeCluster{
		k: cluster.Counters{Forwarded: 11, ForwardFailed: 2, TooLong: 3, TooLarge: 4, InboxDropped: 5, PurgeDropped: 6},
		l: cluster.Local{Ready: true, Routes: 2, Assets: []cluster.LocalAsset{
			{Name: "KV_PETREL_OWNERS"},
			{Name: "PETREL_RETAINED", Leader: true, Followers: []cluster.ReplicaStatus{{Name: "n2", Lag: 7}, {Name: "n3"}}},
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
	} {
		if v, ok := value(fams, w.name, w.labels...); !ok || v != w.want {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, v, ok, w.want)
		}
	}
	if n := len(fams["petrel_cluster_asset_lag"].GetMetric()); n != 2 {
		t.Errorf("%d lag series, want 2 (the followers of the asset this node leads)", n)
	}
}
