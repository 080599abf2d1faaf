package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/cluster"
	"github.com/petrel-mqtt/petrel/internal/config"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/metrics"
)

// newMetrics builds the registry the admin listener serves at /metrics:
// the broker's figures, the TLS listeners' handshake counters, the
// WebSocket listeners' upgrade counters, with an auth: section the
// password checks' counters and with a cluster node its figures
// (docs/metrics.md).
func newMetrics(cfg *config.Config, b *broker.Broker, sec *security, lns []*listener.Listener, node *cluster.Node) (*prometheus.Registry, error) {
	o := metrics.Options{TenantLabels: cfg.Metrics.TenantLabels}
	if node != nil {
		o.Cluster = clusterMetrics{node}
	}
	for _, ln := range lns {
		if t := ln.Config().Type; t == "tls" || t == "wss" {
			o.Listeners = append(o.Listeners, ln)
		}
		if t := ln.Config().Type; t == "ws" || t == "wss" {
			o.Upgrades = append(o.Upgrades, ln)
		}
	}
	if sec.svc != nil {
		o.Collectors = passwordCheckCollectors(sec.svc)
	}
	return metrics.New(b, o)
}

// passwordCheckCollectors exports auth.Service.Stats, read at scrape.
func passwordCheckCollectors(svc *auth.Service) []prometheus.Collector {
	counter := func(name, help string, labels prometheus.Labels, f func(auth.CheckStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f(svc.Stats())) })
	}
	gauge := func(name, help string, f func(auth.CheckStats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(f(svc.Stats())) })
	}
	const refusedHelp = "Password checks refused before any hashing: busy (no check slot in time), throttled_name or throttled_address (failure limits)."
	return []prometheus.Collector{
		counter("petrel_password_checks_total", "Password hashes verified, dummy checks of unknown names included.", nil,
			func(s auth.CheckStats) uint64 { return s.Checks }),
		counter("petrel_password_checks_dummy_total", "Password checks against the dummy hash (unknown names).", nil,
			func(s auth.CheckStats) uint64 { return s.Dummy }),
		counter("petrel_password_checks_refused_total", refusedHelp, prometheus.Labels{"reason": "busy"},
			func(s auth.CheckStats) uint64 { return s.Busy }),
		counter("petrel_password_checks_refused_total", refusedHelp, prometheus.Labels{"reason": "throttled_name"},
			func(s auth.CheckStats) uint64 { return s.ThrottledName }),
		counter("petrel_password_checks_refused_total", refusedHelp, prometheus.Labels{"reason": "throttled_address"},
			func(s auth.CheckStats) uint64 { return s.ThrottledAddress }),
		counter("petrel_password_checks_cpu_waits_total", "Password checks that waited for the hashing CPU budget (auth.password_checks.cpu).", nil,
			func(s auth.CheckStats) uint64 { return s.CPUWaits }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "petrel_password_checks_cpu_seconds_total",
			Help: "Hashing CPU time charged to the password check budget: each check's wall time times its lanes, at most GOMAXPROCS."},
			func() float64 { return svc.Stats().CPU.Seconds() }),
		gauge("petrel_password_checks_running", "Password checks holding a check slot now.",
			func(s auth.CheckStats) int64 { return s.Running }),
		gauge("petrel_password_checks_waiting", "Password checks waiting for a slot or argon2id memory now.",
			func(s auth.CheckStats) int64 { return s.Waiting }),
	}
}

// clusterMetrics is a cluster node as the metrics read it.
type clusterMetrics struct{ n *cluster.Node }

func (c clusterMetrics) ClusterCounters() metrics.ClusterCounters {
	return metrics.ClusterCounters(c.n.Counters())
}

func (c clusterMetrics) ClusterWills() metrics.ClusterWillCounters {
	return metrics.ClusterWillCounters(c.n.WillCounters())
}

func (c clusterMetrics) ClusterView() metrics.ClusterView {
	l := c.n.Local()
	v := metrics.ClusterView{Ready: l.Ready, MetaLeader: l.MetaLeader, Routes: l.Routes}
	for _, a := range l.Assets {
		ma := metrics.ClusterAsset{Name: a.Name, Leader: a.Leader}
		for _, f := range a.Followers {
			ma.Followers = append(ma.Followers, metrics.ClusterFollower{Name: f.Name, Lag: f.Lag})
		}
		v.Assets = append(v.Assets, ma)
	}
	return v
}
