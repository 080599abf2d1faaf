package broker

import (
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// maxSysTenants bounds the tenants that get a $SYS/tenants/{tenant}
// subtree (those with the most sessions first): each costs five retained
// messages.
const maxSysTenants = 10_000

// errSysStarted is returned by a second StartSys.
var errSysStarted = errors.New("broker: $SYS publisher already started")

// StartSys publishes the broker's figures under $SYS every interval, as
// retained QoS 0 messages from the broker, until Shutdown: Mosquitto's
// $SYS/broker/... topics (docs/metrics.md lists them) and, per tenant,
// $SYS/tenants/{tenant}/.... A value is published again only when it
// changed. Who may read them is the Authorizer's decision, as for any
// topic; clients can never publish there (handlePublish). version is the
// payload of $SYS/broker/version. It fails for an interval that is not
// positive, after Shutdown, and when called twice.
func (b *Broker) StartSys(interval time.Duration, version string) error {
	if interval <= 0 {
		return errors.New("broker: $SYS interval must be positive")
	}
	if !b.metrics.sysStarted.CompareAndSwap(false, true) {
		return errSysStarted
	}
	b.mu.Lock()
	if b.shutdown.Load() {
		b.mu.Unlock()
		return ErrServerClosed
	}
	b.wg.Add(1)
	b.mu.Unlock()
	p := &sysPublisher{b: b, last: make(map[string]string), tenants: make(map[string]bool), loads: make(map[string]*[3]float64)}
	go p.run(interval, version)
	return nil
}

// sysPublisher is the state of the $SYS goroutine; only it touches it.
type sysPublisher struct {
	b       *Broker
	last    map[string]string // topic -> payload last published
	tenants map[string]bool   // tenants with a subtree published
	loads   map[string]*[3]float64
	prev    sysCounts
	prevAt  time.Time
	maxConn int
}

// sysCounts are the counters whose rates the load topics show.
type sysCounts struct {
	received, sent, dropped, bytesIn, bytesOut, connects uint64
}

func (p *sysPublisher) run(interval time.Duration, version string) {
	defer p.b.wg.Done()
	p.publish("$SYS/broker/version", version)
	p.tick()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.b.done:
			return
		case <-t.C:
			p.tick()
		}
	}
}

// publish sends payload on topic, retained, unless it is what was sent
// last; an empty payload clears the topic's retained message.
func (p *sysPublisher) publish(topic, payload string) {
	if last, ok := p.last[topic]; ok && last == payload {
		return
	}
	if payload == "" {
		delete(p.last, topic)
	} else {
		p.last[topic] = payload
	}
	msg := session.NewMessage(topic, []byte(payload))
	msg.Retain = true
	p.b.retainMessage(msg)
	// QoS 0 and no store: nothing to wait for, nothing to fail.
	_, _ = p.b.publish(msg, nil, false)
}

func (p *sysPublisher) tick() {
	f := p.b.Figures()
	now := time.Now()
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	i := func(n int) string { return strconv.Itoa(n) }
	p.publish("$SYS/broker/uptime", strconv.FormatInt(int64(f.Uptime/time.Second), 10)+" seconds")
	p.maxConn = max(p.maxConn, f.Clients)
	p.publish("$SYS/broker/clients/connected", i(f.Clients))
	p.publish("$SYS/broker/clients/disconnected", i(f.SessionsOffline))
	p.publish("$SYS/broker/clients/total", i(f.Sessions))
	p.publish("$SYS/broker/clients/maximum", i(p.maxConn))
	p.publish("$SYS/broker/messages/received", u(f.MessagesReceived))
	p.publish("$SYS/broker/messages/sent", u(f.MessagesSent))
	p.publish("$SYS/broker/messages/inflight", i(f.Inflight))
	p.publish("$SYS/broker/messages/stored", i(f.Queued+f.Retained))
	p.publish("$SYS/broker/publish/messages/received", u(f.MessagesReceived))
	p.publish("$SYS/broker/publish/messages/sent", u(f.MessagesSent))
	p.publish("$SYS/broker/publish/messages/dropped", u(f.MessagesDropped))
	var pubIn, pubOut uint64
	for q := range 3 {
		pubIn += f.PublishBytesIn[q]
		pubOut += f.PublishBytesOut[q]
	}
	p.publish("$SYS/broker/publish/bytes/received", u(pubIn))
	p.publish("$SYS/broker/publish/bytes/sent", u(pubOut))
	p.publish("$SYS/broker/bytes/received", u(f.BytesReceived))
	p.publish("$SYS/broker/bytes/sent", u(f.BytesSent))
	p.publish("$SYS/broker/subscriptions/count", i(f.Subscriptions))
	p.publish("$SYS/broker/retained messages/count", i(f.Retained))
	p.publish("$SYS/broker/store/messages/count", i(f.Queued+f.Retained))
	p.publish("$SYS/broker/store/messages/bytes", i(f.QueuedBytes+f.RetainedBytes))

	cur := sysCounts{f.MessagesReceived, f.MessagesSent, f.MessagesDropped, f.BytesReceived, f.BytesSent, f.Connects}
	if !p.prevAt.IsZero() {
		p.loadTopics(now.Sub(p.prevAt), cur)
	}
	p.prev, p.prevAt = cur, now
	p.tenantTopics(f.Tenants)
}

// loadTopics publishes Mosquitto's load averages: per-minute rates over
// the last interval, smoothed exponentially over 1, 5 and 15 minutes.
func (p *sysPublisher) loadTopics(d time.Duration, cur sysCounts) {
	secs := d.Seconds()
	if secs <= 0 {
		return
	}
	perMin := func(now, before uint64) float64 { return float64(now-before) * 60 / secs }
	rates := []struct {
		topics []string
		rate   float64
	}{
		{[]string{"messages/received", "publish/received"}, perMin(cur.received, p.prev.received)},
		{[]string{"messages/sent", "publish/sent"}, perMin(cur.sent, p.prev.sent)},
		{[]string{"publish/dropped"}, perMin(cur.dropped, p.prev.dropped)},
		{[]string{"bytes/received"}, perMin(cur.bytesIn, p.prev.bytesIn)},
		{[]string{"bytes/sent"}, perMin(cur.bytesOut, p.prev.bytesOut)},
		{[]string{"connections"}, perMin(cur.connects, p.prev.connects)},
	}
	windows := [3]struct {
		name string
		secs float64
	}{{"1min", 60}, {"5min", 300}, {"15min", 900}}
	for _, r := range rates {
		key := r.topics[0]
		l := p.loads[key]
		first := l == nil
		if first {
			l = new([3]float64)
			p.loads[key] = l
		}
		for w, win := range windows {
			if first {
				l[w] = r.rate
			} else {
				l[w] = r.rate + math.Exp(-secs/win.secs)*(l[w]-r.rate)
			}
			v := strconv.FormatFloat(l[w], 'f', 2, 64)
			for _, t := range r.topics {
				p.publish("$SYS/broker/load/"+t+"/"+win.name, v)
			}
		}
	}
}

// sysTenantTopics are the topics of a tenant's subtree, below
// $SYS/tenants/{tenant}/.
var sysTenantTopics = [...]string{"clients/connected", "messages/received", "messages/sent", "messages/queued", "messages/dropped"}

// tenantTopics publishes the subtree of each tenant that has sessions
// and clears the subtrees of tenants that have none any more.
func (p *sysPublisher) tenantTopics(ts []TenantFigures) {
	list := make([]*TenantFigures, 0, len(ts))
	for i := range ts {
		if ts[i].Sessions > 0 && sysTenantName(ts[i].Tenant) {
			list = append(list, &ts[i])
		}
	}
	if len(list) > maxSysTenants {
		sort.Slice(list, func(i, j int) bool { return list[i].Sessions > list[j].Sessions })
		list = list[:maxSysTenants]
	}
	seen := make(map[string]bool, len(list))
	for _, t := range list {
		seen[t.Tenant] = true
		p.tenants[t.Tenant] = true
		base := "$SYS/tenants/" + t.Tenant + "/"
		vals := [len(sysTenantTopics)]string{
			strconv.Itoa(t.Connected), strconv.FormatUint(t.Received, 10), strconv.FormatUint(t.Sent, 10),
			strconv.Itoa(t.Queued), strconv.FormatUint(t.Dropped, 10),
		}
		for k, topic := range sysTenantTopics {
			p.publish(base+topic, vals[k])
		}
	}
	for name := range p.tenants {
		if seen[name] {
			continue
		}
		delete(p.tenants, name)
		for _, topic := range sysTenantTopics {
			p.publish("$SYS/tenants/"+name+"/"+topic, "")
		}
	}
}

// sysTenantName reports whether a tenant can name a topic level: not
// empty (clients without a tenant) and free of '/', '+', '#' and NUL
// (the auth package refuses such tenants already; a custom Authenticator
// might not).
func sysTenantName(t string) bool {
	return t != "" && !strings.ContainsAny(t, "/+#\x00")
}
