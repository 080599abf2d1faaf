package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mqtt/petrel/broker"
)

// desc is one metric family: its name, help, labels and type.
type desc struct {
	*prometheus.Desc
	name string
	kind prometheus.ValueType // UntypedValue: a histogram
}

func newDesc(kind prometheus.ValueType, name, help string, labels ...string) desc {
	return desc{prometheus.NewDesc(name, help, labels, nil), name, kind}
}

// Names returns the name of every metric family the broker's collector
// can export (per-tenant, TLS and cluster ones included), and for histograms their
// _bucket, _sum and _count series; the Go and process collectors' names
// are not included.
func Names() []string {
	var names []string
	for _, ds := range [][]desc{brokerDescs, handshakeDescs, upgradeDescs, tenantDescs, clusterDescs, clusterBrokerDescs, clusterWillDescs} {
		for _, d := range ds {
			names = append(names, d.name)
			if d.kind == prometheus.UntypedValue {
				names = append(names, d.name+"_bucket", d.name+"_sum", d.name+"_count")
			}
		}
	}
	return names
}

var (
	dConnections      = newDesc(prometheus.GaugeValue, "petrel_connections", "Clients connected now (CONNACK sent), by listener and protocol version.", "listener", "version")
	dAccepted         = newDesc(prometheus.CounterValue, "petrel_connections_accepted_total", "Network connections accepted.")
	dConnects         = newDesc(prometheus.CounterValue, "petrel_connects_total", "CONNECTs accepted with CONNACK success.")
	dDisconnects      = newDesc(prometheus.CounterValue, "petrel_disconnects_total", "Connected clients whose connection ended, by reason.", "reason")
	dRefused          = newDesc(prometheus.CounterValue, "petrel_connects_refused_total", "CONNECTs refused, by CONNACK reason.", "reason")
	dAuthFailures     = newDesc(prometheus.CounterValue, "petrel_auth_failures_total", "Failed authentications, by method and CONNACK reason.", "method", "reason")
	dMsgIn            = newDesc(prometheus.CounterValue, "petrel_messages_received_total", "PUBLISH packets accepted from clients, by QoS.", "qos")
	dMsgOut           = newDesc(prometheus.CounterValue, "petrel_messages_sent_total", "PUBLISH packets written to clients, by QoS.", "qos")
	dPubBytesIn       = newDesc(prometheus.CounterValue, "petrel_messages_received_bytes_total", "Topic and payload bytes of the PUBLISH packets accepted, by QoS.", "qos")
	dPubBytesOut      = newDesc(prometheus.CounterValue, "petrel_messages_sent_bytes_total", "Topic and payload bytes of the PUBLISH packets written, by QoS.", "qos")
	dBytesIn          = newDesc(prometheus.CounterValue, "petrel_received_bytes_total", "Bytes of every MQTT packet read from clients.")
	dBytesOut         = newDesc(prometheus.CounterValue, "petrel_sent_bytes_total", "Bytes written to clients.")
	dDropped          = newDesc(prometheus.CounterValue, "petrel_messages_dropped_total", "Messages dropped, by reason.", "reason")
	dRetained         = newDesc(prometheus.GaugeValue, "petrel_retained_messages", "Retained messages held.")
	dRetainedBytes    = newDesc(prometheus.GaugeValue, "petrel_retained_bytes", "Topic and payload bytes of the retained messages.")
	dSessions         = newDesc(prometheus.GaugeValue, "petrel_sessions", "Sessions held, by state (online, offline).", "state")
	dSubscriptions    = newDesc(prometheus.GaugeValue, "petrel_subscriptions", "Subscriptions held (filter, session).")
	dQueued           = newDesc(prometheus.GaugeValue, "petrel_queued_messages", "Messages queued for sessions, online and offline.")
	dQueuedBytes      = newDesc(prometheus.GaugeValue, "petrel_queued_bytes", "Topic and payload bytes of the queued messages.")
	dInflight         = newDesc(prometheus.GaugeValue, "petrel_inflight_messages", "QoS 1 and 2 messages sent and not yet acknowledged.")
	dParked           = newDesc(prometheus.GaugeValue, "petrel_parked_connections", "Idle connections parked with no reader goroutine.")
	dHeld             = newDesc(prometheus.GaugeValue, "petrel_refusals_held", "Refused connections whose CONNACK is held (auth.password_checks.refusal_delay).")
	dHeldTotal        = newDesc(prometheus.CounterValue, "petrel_refusals_held_total", "Refusals by the failure limits, by outcome: held, answered at once (bounds full), connection closed at accept (its address's share full).", "outcome")
	dStoreErrors      = newDesc(prometheus.CounterValue, "petrel_store_errors_total", "Failed store writes.")
	dStoreRetried     = newDesc(prometheus.CounterValue, "petrel_store_retried_total", "Durable store writes written again because no quorum acknowledged them (a cluster's session journal electing a leader).")
	dStoreSize        = newDesc(prometheus.GaugeValue, "petrel_store_size_bytes", "Disk usage of the store's data directory.")
	dCommitSeconds    = newDesc(prometheus.UntypedValue, "petrel_store_commit_duration_seconds", "Time of a store commit as the broker waits for it (group commit and fsync included).")
	dCommitOps        = newDesc(prometheus.UntypedValue, "petrel_store_commit_operations", "Operations in one store commit.")
	dDelivery         = newDesc(prometheus.UntypedValue, "petrel_delivery_latency_seconds", "Time from receiving a PUBLISH to writing it to a subscriber, sampled (one message in 64).")
	dHandshakes       = newDesc(prometheus.GaugeValue, "petrel_tls_handshakes_in_progress", "Unfinished TLS handshakes, by listener.", "listener")
	dHandshakeDropped = newDesc(prometheus.CounterValue, "petrel_tls_handshakes_dropped_total", "Unfinished TLS handshakes closed, by listener and reason.", "listener", "reason")
	dUpgrades         = newDesc(prometheus.GaugeValue, "petrel_ws_upgrades_in_progress", "Pending WebSocket upgrades, by listener.", "listener")
	dUpgradeDropped   = newDesc(prometheus.CounterValue, "petrel_ws_upgrades_dropped_total", "Pending WebSocket upgrades closed, by listener and reason.", "listener", "reason")

	dTenantConnections = newDesc(prometheus.GaugeValue, "petrel_tenant_connections", "Clients connected now, by tenant (top tenant_labels, the rest as other).", "tenant")
	dTenantIn          = newDesc(prometheus.CounterValue, "petrel_tenant_messages_received_total", "PUBLISH packets accepted from a tenant's clients (top tenant_labels, the rest as other).", "tenant")
	dTenantOut         = newDesc(prometheus.CounterValue, "petrel_tenant_messages_sent_total", "PUBLISH packets written to a tenant's clients (top tenant_labels, the rest as other).", "tenant")
	dTenantQueued      = newDesc(prometheus.GaugeValue, "petrel_tenant_queued_messages", "Messages queued for a tenant's sessions (top tenant_labels, the rest as other).", "tenant")
	dTenantDropped     = newDesc(prometheus.CounterValue, "petrel_tenant_messages_dropped_total", "Messages dropped by the queues of a tenant's sessions held now (top tenant_labels, the rest as other).", "tenant")
)

var brokerDescs = []desc{
	dConnections, dAccepted, dConnects, dDisconnects, dRefused, dAuthFailures, dMsgIn, dMsgOut, dPubBytesIn, dPubBytesOut,
	dBytesIn, dBytesOut, dDropped, dRetained, dRetainedBytes, dSessions, dSubscriptions, dQueued, dQueuedBytes, dInflight,
	dParked, dHeld, dHeldTotal, dStoreErrors, dStoreRetried, dStoreSize, dCommitSeconds, dCommitOps, dDelivery,
}

var handshakeDescs = []desc{dHandshakes, dHandshakeDropped}

var upgradeDescs = []desc{dUpgrades, dUpgradeDropped}

var tenantDescs = []desc{dTenantConnections, dTenantIn, dTenantOut, dTenantQueued, dTenantDropped}

// collector reads the broker's figures at each scrape.
type collector struct {
	src Source
	o   Options
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range brokerDescs {
		ch <- d.Desc
	}
	if len(c.o.Listeners) > 0 {
		for _, d := range handshakeDescs {
			ch <- d.Desc
		}
	}
	if len(c.o.Upgrades) > 0 {
		for _, d := range upgradeDescs {
			ch <- d.Desc
		}
	}
	if c.o.TenantLabels > 0 {
		for _, d := range tenantDescs {
			ch <- d.Desc
		}
	}
	if c.o.Cluster != nil {
		for _, d := range clusterDescs {
			ch <- d.Desc
		}
		for _, d := range clusterBrokerDescs {
			ch <- d.Desc
		}
		if _, ok := c.o.Cluster.(ClusterWillSource); ok {
			for _, d := range clusterWillDescs {
				ch <- d.Desc
			}
		}
	}
}

var qosLabels = [3]string{"0", "1", "2"}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	f := c.src.Figures()
	emit := func(d desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.Desc, d.kind, v, labels...)
	}
	for _, o := range f.Online {
		emit(dConnections, float64(o.N), o.Listener, o.Version)
	}
	emit(dAccepted, float64(f.Connections))
	emit(dConnects, float64(f.Connects))
	for r, n := range f.Disconnects {
		emit(dDisconnects, float64(n), r)
	}
	for r, n := range f.Refused {
		emit(dRefused, float64(n), r)
	}
	for _, a := range f.AuthFailures {
		emit(dAuthFailures, float64(a.N), a.Method, a.Reason)
	}
	for q, l := range qosLabels {
		emit(dMsgIn, float64(f.ReceivedByQoS[q]), l)
		emit(dMsgOut, float64(f.SentByQoS[q]), l)
		emit(dPubBytesIn, float64(f.PublishBytesIn[q]), l)
		emit(dPubBytesOut, float64(f.PublishBytesOut[q]), l)
	}
	emit(dBytesIn, float64(f.BytesReceived))
	emit(dBytesOut, float64(f.BytesSent))
	for r, n := range f.Drops {
		emit(dDropped, float64(n), r)
	}
	emit(dRetained, float64(f.Retained))
	emit(dRetainedBytes, float64(f.RetainedBytes))
	emit(dSessions, float64(f.SessionsOnline), "online")
	emit(dSessions, float64(f.SessionsOffline), "offline")
	emit(dSubscriptions, float64(f.Subscriptions))
	emit(dQueued, float64(f.Queued))
	emit(dQueuedBytes, float64(f.QueuedBytes))
	emit(dInflight, float64(f.Inflight))
	emit(dParked, float64(f.Parked))
	emit(dHeld, float64(f.Held.Held))
	emit(dHeldTotal, float64(f.Held.Holds), "held")
	emit(dHeldTotal, float64(f.Held.Overflow), "overflow")
	emit(dHeldTotal, float64(f.Held.AtAccept), "closed_at_accept")
	emit(dStoreErrors, float64(f.StoreErrors))
	emit(dStoreRetried, float64(f.StoreRetried))
	if f.StoreBytes >= 0 {
		emit(dStoreSize, float64(f.StoreBytes))
	}
	ch <- histogram(dCommitSeconds, f.CommitSeconds, 1e6)
	ch <- histogram(dCommitOps, f.CommitOps, 1)
	ch <- histogram(dDelivery, f.DeliveryLatency, 1e6)
	for _, l := range c.o.Listeners {
		s := l.HandshakeStats()
		emit(dHandshakes, float64(s.InProgress), l.Name())
		emit(dHandshakeDropped, float64(s.Evicted), l.Name(), "evicted")
		emit(dHandshakeDropped, float64(s.RefusedPerAddress), l.Name(), "refused_per_address")
		emit(dHandshakeDropped, float64(s.HelloTimeouts), l.Name(), "hello_timeout")
		emit(dHandshakeDropped, float64(s.HandshakeTimeouts), l.Name(), "handshake_timeout")
	}
	for _, l := range c.o.Upgrades {
		s := l.UpgradeStats()
		emit(dUpgrades, float64(s.InProgress), l.Name())
		emit(dUpgradeDropped, float64(s.Evicted), l.Name(), "evicted")
		emit(dUpgradeDropped, float64(s.RefusedPerAddress), l.Name(), "refused_per_address")
		emit(dUpgradeDropped, float64(s.RequestTimeouts), l.Name(), "request_timeout")
		emit(dUpgradeDropped, float64(s.Timeouts), l.Name(), "upgrade_timeout")
	}
	if n := c.o.TenantLabels; n > 0 {
		c.collectTenants(ch, &f, n)
	}
	if c.o.Cluster != nil {
		collectCluster(ch, c.o.Cluster)
		collectClusterBroker(ch, f.Cluster)
		if ws, ok := c.o.Cluster.(ClusterWillSource); ok {
			collectClusterWills(ch, ws)
		}
	}
}

// histogram turns a broker histogram into a constant Prometheus one,
// its bounds multiplied by scale (microseconds to seconds).
// The bounds and the sum are divided by per (1e6 for microseconds to
// seconds): a division gives the exact decimal bound (5e-05), where a
// multiplication by 1e-6 prints 4.9999999999999996e-05.
func histogram(d desc, h broker.Histogram, per float64) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[float64(b)/per] = cum
	}
	return prometheus.MustNewConstHistogram(d.Desc, h.Count, float64(h.Sum)/per, buckets)
}

// collectTenants exports each per-tenant figure for the top n tenants by
// that figure, the others summed under tenant="other".
func (c *collector) collectTenants(ch chan<- prometheus.Metric, f *broker.Figures, n int) {
	type figure struct {
		d   desc
		get func(*broker.TenantFigures) float64
	}
	figs := []figure{
		{dTenantConnections, func(t *broker.TenantFigures) float64 { return float64(t.Connected) }},
		{dTenantIn, func(t *broker.TenantFigures) float64 { return float64(t.Received) }},
		{dTenantOut, func(t *broker.TenantFigures) float64 { return float64(t.Sent) }},
		{dTenantQueued, func(t *broker.TenantFigures) float64 { return float64(t.Queued) }},
		{dTenantDropped, func(t *broker.TenantFigures) float64 { return float64(t.Dropped) }},
	}
	for _, fg := range figs {
		top, other := topN(f.Tenants, n, fg.get)
		other += fg.get(&f.TenantsOverflowed)
		for _, t := range top {
			ch <- prometheus.MustNewConstMetric(fg.d.Desc, fg.d.kind, t.v, tenantLabel(t.name))
		}
		ch <- prometheus.MustNewConstMetric(fg.d.Desc, fg.d.kind, other, "other")
	}
}

// tenantLabel is the label of a tenant; the tenant "" (clients with no
// tenant, as without authentication) is "none". A tenant literally named
// "other" or "none" is quoted so it cannot be confused with those.
func tenantLabel(t string) string {
	switch t {
	case "":
		return "none"
	case "other", "none":
		return strconv.Quote(t)
	}
	return t
}
