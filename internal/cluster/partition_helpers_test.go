package cluster

import (
	"testing"

	"github.com/petrel-mqtt/petrel/internal/clustertest"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

// partitionable rewires cfgs so that every route goes through a proxy
// of the returned partition (clustertest): each node advertises its
// proxy, and its peers are the others' proxies.
func partitionable(t testing.TB, cfgs []Config) *clustertest.Partition {
	t.Helper()
	names := make([]string, len(cfgs))
	listen := make([]string, len(cfgs))
	for i, c := range cfgs {
		names[i], listen[i] = c.Node, c.Listen
	}
	addrs, p := clustertest.New(t, names, listen, mqtttest.FreePorts(t, len(cfgs), mqtttest.ClusterPorts))
	for i := range cfgs {
		cfgs[i].Advertise = addrs[i]
		cfgs[i].Peers = nil
		for j := range cfgs {
			if j != i {
				cfgs[i].Peers = append(cfgs[i].Peers, addrs[j])
			}
		}
	}
	return p
}
