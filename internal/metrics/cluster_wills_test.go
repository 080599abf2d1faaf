package metrics

import (
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
)

// fakeWillCluster is a ClusterSource that keeps a will registry.
type fakeWillCluster struct {
	fakeCluster
	w ClusterWillCounters
}

func (f fakeWillCluster) ClusterWills() ClusterWillCounters { return f.w }

// TestClusterWillSeries: a cluster source with a will registry exports
// each of its counters in its own series; one without exports none of
// them.
func TestClusterWillSeries(t *testing.T) {
	b, _ := startBroker(t, broker.Options{})
	src := fakeWillCluster{w: ClusterWillCounters{Kept: 1, Dropped: 2, Reaped: 3, Skipped: 4, ReapFailed: 5,
		Unqueued: 6, Unheld: 7, WriteFailed: 8, NodesReaped: 9}}
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
		{"petrel_cluster_wills_total", []string{"event", "kept"}, 1},
		{"petrel_cluster_wills_total", []string{"event", "dropped"}, 2},
		{"petrel_cluster_wills_total", []string{"event", "published"}, 3},
		{"petrel_cluster_wills_total", []string{"event", "skipped"}, 4},
		{"petrel_cluster_wills_total", []string{"event", "unqueued"}, 6},
		{"petrel_cluster_wills_total", []string{"event", "unheld"}, 7},
		{"petrel_cluster_wills_total", []string{"event", "write_failed"}, 8},
		{"petrel_cluster_will_reap_failed_total", nil, 5},
		{"petrel_cluster_will_reapings_total", nil, 9},
	} {
		if v, ok := value(fams, w.name, w.labels...); !ok || v != w.want {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, v, ok, w.want)
		}
	}

	without, err := New(b, Options{Cluster: fakeCluster{}})
	if err != nil {
		t.Fatal(err)
	}
	fams = scrape(t, Handler(without))
	for _, d := range clusterWillDescs {
		if fams[d.name] != nil {
			t.Errorf("%s exported by a cluster source without a will registry", d.name)
		}
	}
}
