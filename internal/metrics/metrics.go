// Package metrics exposes a broker's figures in the Prometheus text format:
// a Collector that reads broker.Figures at each scrape (nothing on the
// message path touches a Prometheus object) on a registry of its own, with
// the Go runtime and process collectors, served by Handler. The admin
// server mounts the handler at /metrics.
package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
)

// Source is what the collector reads: a *broker.Broker.
type Source interface {
	Figures() broker.Figures
}

// HandshakeSource is a TLS listener whose unfinished handshakes are
// counted (*listener.Listener).
type HandshakeSource interface {
	Name() string
	HandshakeStats() listener.HandshakeStats
}

// UpgradeSource is a WebSocket listener whose pending HTTP upgrades are
// counted (*listener.Listener).
type UpgradeSource interface {
	Name() string
	UpgradeStats() listener.UpgradeStats
}

// Options configure the metrics.
type Options struct {
	// TenantLabels is how many tenants get series of their own for the
	// per-tenant figures: the top TenantLabels by each figure, the rest
	// summed under tenant="other". 0 (default) exports no per-tenant
	// series.
	TenantLabels int
	// Listeners are the TLS listeners whose handshake counters are
	// exported.
	Listeners []HandshakeSource
	// Upgrades are the WebSocket listeners (ws, wss) whose pending
	// upgrade counters are exported.
	Upgrades []UpgradeSource
	// Cluster is the cluster node whose counters and own view are
	// exported (petrel_cluster_*); nil without a cluster.
	Cluster ClusterSource
	// Collectors are more collectors registered beside the broker's (for
	// example the authentication service's counters).
	Collectors []prometheus.Collector
}

// MaxTenantLabels bounds Options.TenantLabels.
const MaxTenantLabels = 1000

// New returns the registry for src: the broker's figures, the Go runtime
// and the process. It fails when o is invalid or a collector in
// o.Collectors clashes with another.
func New(src Source, o Options) (*prometheus.Registry, error) {
	if o.TenantLabels < 0 || o.TenantLabels > MaxTenantLabels {
		return nil, errTenantLabels(o.TenantLabels)
	}
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		&collector{src: src, o: o},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	cs = append(cs, o.Collectors...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// Handler serves reg in the Prometheus exposition format. Errors while
// collecting are answered with HTTP 500; at most two scrapes are served
// at once.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.HTTPErrorOnError,
		MaxRequestsInFlight: 2,
		Registry:            reg,
	})
}

type errTenantLabels int

func (e errTenantLabels) Error() string {
	return "metrics: tenant_labels " + strconv.Itoa(int(e)) + " out of range 0.." + strconv.Itoa(MaxTenantLabels)
}
