package cluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

// testLocal: each of three nodes sees itself ready with routes to the two
// others; exactly one of them is the meta leader; every node holds a
// replica of both assets (replicas 3), exactly one leads each, and that
// one alone reports the two others as followers with their lag.
func testLocal(t *testing.T, ms []member) {
	var views []Local
	// Leaders can move while the cluster settles: read the three views
	// until they agree on one leader per asset and for the meta group.
	mqtttest.Eventually(t, 20*time.Second, func() bool {
		views = views[:0]
		for _, m := range ms {
			views = append(views, m.Local())
		}
		meta, leads := 0, map[string]int{}
		for _, l := range views {
			if l.MetaLeader {
				meta++
			}
			for _, a := range l.Assets {
				if a.Leader {
					leads[a.Name]++
				}
			}
		}
		return meta == 1 && leads[assetNames[0]] == 1 && leads[assetNames[1]] == 1
	}, "one meta leader and one leader per asset")
	for i, l := range views {
		node := ms[i].cfg.Node
		if !l.Ready || l.Routes != 2 {
			t.Fatalf("%s: local view %+v, want ready with 2 routes", node, l)
		}
		var names []string
		for _, a := range l.Assets {
			names = append(names, a.Name)
			var followers []string
			for _, f := range a.Followers {
				followers = append(followers, f.Name)
			}
			slices.Sort(followers)
			switch {
			case a.Leader && len(followers) != 2:
				t.Errorf("%s leads %s with followers %q, want the two others", node, a.Name, followers)
			case a.Leader && slices.Contains(followers, node):
				t.Errorf("%s lists itself as a follower of %s", node, a.Name)
			case !a.Leader && len(followers) != 0:
				t.Errorf("%s follows %s but reports followers %q (only the leader knows their lag)", node, a.Name, followers)
			}
		}
		if want := []string{"KV_" + ownersBucket, logStream, retainedStream, sessionsStream}; !slices.Equal(names, want) {
			t.Errorf("%s: assets %q, want %q", node, names, want)
		}
	}
}

// TestLocalSendsNoRequest: Local reads the embedded server's memory: a
// hundred calls publish nothing on the node's connections (no JetStream
// API request, no status request to another node), where one Status
// call does ask JetStream, which the same count sees.
func TestLocalSendsNoRequest(t *testing.T) {
	ms := startAll(t, configs(t, 1, 1))
	n := ms[0]
	waitReady(t, ms)
	sent := func() uint64 {
		return n.ctl.Stats().OutMsgs + n.data.Stats().OutMsgs + n.share.Stats().OutMsgs + n.logc.Stats().OutMsgs
	}
	// The node's own start-up traffic (its retained follower's consumer)
	// can still be going: retry until a run of calls sees none. A Local
	// that published would fail every run.
	var before uint64
	mqtttest.Eventually(t, 10*time.Second, func() bool {
		before = sent()
		for range 100 {
			if l := n.Local(); !l.Ready || len(l.Assets) != len(assetNames) {
				t.Fatalf("local view %+v", l)
			}
		}
		return sent() == before
	}, "100 Local calls publishing nothing")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if sent() == before {
		t.Fatal("Status published nothing: the count does not see requests")
	}
}

// BenchmarkLocal is the cost of one node's own view, read at each
// metrics scrape (one node, standalone JetStream).
func BenchmarkLocal(b *testing.B) {
	ms := startAll(b, configs(b, 1, 1))
	waitReady(b, ms)
	n := ms[0]
	b.ReportAllocs()
	for b.Loop() {
		n.Local()
	}
}
