package metrics

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tenantAuth takes the username as the tenant; the password "bad" is
// refused as a wrong password.
type tenantAuth struct{ broker.AllowAll }

func (tenantAuth) Authenticate(_ context.Context, ci *broker.ConnectInfo) (*broker.Identity, error) {
	if string(ci.Password) == "bad" {
		return nil, packet.BadUsernameOrPassword
	}
	return &broker.Identity{Tenant: ci.Username, Username: ci.Username}, nil
}

// scrape fetches the handler's page and parses it.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, rec.Body)
	}
	return fams
}

// value returns the value of the series of name whose labels include
// want (name=value pairs), and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// eventuallyValue polls the handler until the series has the value.
func eventuallyValue(t *testing.T, h http.Handler, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, ok := value(scrape(t, h), name, labels...)
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connect(t *testing.T, addr string, p *packet.Connect) *mqtttest.Client {
	t.Helper()
	c := mqtttest.Dial(t, addr, p.Version)
	p.KeepAlive = 60
	p.UsernameFlag = p.Username != ""
	if ack := c.Connect(p); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v for %q/%q", ack.ReasonCode, p.Username, p.ClientID)
	}
	return c
}

func startBroker(t *testing.T, o broker.Options) (*broker.Broker, string) {
	t.Helper()
	o.Authenticator, o.Store = tenantAuth{}, memstore.New()
	return mqtttest.StartOn(t, o, listener.Config{Name: "mqtt-test", Type: "tcp"})
}

// TestMetricsFollowTraffic scrapes the handler of a live broker while
// real clients connect, publish at QoS 0 and 1, are refused and have a
// message dropped, and checks that each figure moves by what was done.
func TestMetricsFollowTraffic(t *testing.T) {
	b, addr := startBroker(t, broker.Options{})
	reg, err := New(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(reg)
	fams := scrape(t, h)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "petrel_connects_total", "petrel_store_commit_duration_seconds"} {
		if fams[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}

	// A persistent 5.0 subscriber (its QoS 1 messages go through the
	// store) and a 3.1.1 publisher.
	sp := &packet.Connect{Version: packet.V5, ClientID: "sub", Username: "a",
		Properties: packet.Properties{SessionExpiryInterval: 60, MaximumPacketSize: 512}}
	sp.Properties.Set(packet.PropSessionExpiryInterval)
	sp.Properties.Set(packet.PropMaximumPacketSize)
	sub := connect(t, addr, sp)
	sub.Subscribe(1, packet.Subscription{Filter: "m/#", QoS: 1})
	pub := connect(t, addr, &packet.Connect{Version: packet.V311, ClientID: "pub", Username: "a", CleanStart: true})
	eventuallyValue(t, h, 1, "petrel_connections", "listener", "mqtt-test", "version", "5.0")
	eventuallyValue(t, h, 1, "petrel_connections", "listener", "mqtt-test", "version", "3.1.1")

	const q0, q1 = 130, 5
	for i := range q0 {
		pub.Send(&packet.Publish{Topic: "m/0", Payload: []byte(fmt.Sprint(i))})
	}
	for i := range q1 {
		pub.Send(&packet.Publish{Topic: "m/1", QoS: 1, PacketID: uint16(i + 1), Payload: []byte("x")})
		if _, ok := pub.Expect().(*packet.Puback); !ok {
			t.Fatal("expected PUBACK")
		}
	}
	// Too large for the subscriber's Maximum Packet Size: dropped
	// [MQTT-3.1.2-24].
	pub.Send(&packet.Publish{Topic: "m/big", Payload: bytes.Repeat([]byte{'b'}, 1000)})
	for range q0 + q1 {
		p := sub.ExpectPublish()
		if p.QoS == 1 {
			sub.Send(&packet.Puback{PacketID: p.PacketID})
		}
	}
	eventuallyValue(t, h, q0+1, "petrel_messages_received_total", "qos", "0")
	eventuallyValue(t, h, q1, "petrel_messages_received_total", "qos", "1")
	eventuallyValue(t, h, q0, "petrel_messages_sent_total", "qos", "0")
	eventuallyValue(t, h, q1, "petrel_messages_sent_total", "qos", "1")
	eventuallyValue(t, h, 1, "petrel_messages_dropped_total", "reason", "too_large")
	eventuallyValue(t, h, 0, "petrel_inflight_messages")

	fams = scrape(t, h)
	if n, _ := value(fams, "petrel_store_commit_duration_seconds"); n < q1 {
		t.Errorf("store commits observed %v, want at least %d (one per QoS 1 message to the persistent session)", n, q1)
	}
	if n, _ := value(fams, "petrel_store_commit_operations"); n < q1 {
		t.Errorf("store commit sizes observed %v, want at least %d", n, q1)
	}
	// 130 QoS 0 messages from one connection: its stripe's count passes a
	// multiple of 64 at least once, and that message is observed.
	if n, _ := value(fams, "petrel_delivery_latency_seconds"); n < 1 {
		t.Errorf("delivery latency observations %v, want at least 1", n)
	}
	if n, _ := value(fams, "petrel_messages_received_bytes_total", "qos", "1"); n != float64(q1*len("m/1x")) {
		t.Errorf("QoS 1 bytes received %v, want %d", n, q1*len("m/1x"))
	}
	if n, _ := value(fams, "petrel_sessions", "state", "online"); n != 2 {
		t.Errorf("online sessions %v, want 2", n)
	}

	// A wrong password: refused and counted as an authentication failure.
	bad := mqtttest.Dial(t, addr, packet.V311)
	if ack := bad.Connect(&packet.Connect{ClientID: "x", Username: "a", UsernameFlag: true, Password: []byte("bad"), PasswordFlag: true}); ack.ReasonCode == packet.Success {
		t.Fatal("bad password accepted")
	}
	eventuallyValue(t, h, 1, "petrel_auth_failures_total", "method", "password", "reason", "bad_user_name_or_password")
	eventuallyValue(t, h, 1, "petrel_connects_refused_total", "reason", "bad_user_name_or_password")

	// The subscriber goes away: its session stays offline, the publisher's
	// disconnect is counted by reason.
	sub.Send(&packet.Disconnect{})
	pub.Send(&packet.Disconnect{})
	eventuallyValue(t, h, 1, "petrel_sessions", "state", "offline")
	eventuallyValue(t, h, 2, "petrel_disconnects_total", "reason", "client_disconnect")
	eventuallyValue(t, h, 0, "petrel_connections", "listener", "mqtt-test", "version", "5.0")
}

// TestTenantSeriesBounded connects clients of seven tenants and checks
// that with tenant_labels 2 each per-tenant figure has exactly three
// series, the two largest tenants and "other" holding the rest, and that
// no per-tenant series exist by default.
func TestTenantSeriesBounded(t *testing.T) {
	b, addr := startBroker(t, broker.Options{})
	// Tenant tK gets K clients.
	for k := 1; k <= 7; k++ {
		for i := range k {
			connect(t, addr, &packet.Connect{Version: packet.V311, CleanStart: true, ClientID: fmt.Sprintf("c%d", i), Username: fmt.Sprintf("t%d", k)})
		}
	}
	reg, err := New(b, Options{TenantLabels: 2})
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(reg)
	eventuallyValue(t, h, 1+2+3+4+5, "petrel_tenant_connections", "tenant", "other")
	fams := scrape(t, h)
	for _, name := range []string{"petrel_tenant_connections", "petrel_tenant_messages_received_total", "petrel_tenant_messages_sent_total",
		"petrel_tenant_queued_messages", "petrel_tenant_messages_dropped_total"} {
		f := fams[name]
		if f == nil {
			t.Fatalf("%s missing", name)
		}
		if len(f.Metric) > 3 {
			t.Errorf("%s has %d series, want at most 3 (2 tenants + other)", name, len(f.Metric))
		}
	}
	for tenant, want := range map[string]float64{"t7": 7, "t6": 6} {
		if n, ok := value(fams, "petrel_tenant_connections", "tenant", tenant); !ok || n != want {
			t.Errorf("tenant %s connections %v (present %v), want %v", tenant, n, ok, want)
		}
	}
	if _, ok := value(fams, "petrel_tenant_connections", "tenant", "t5"); ok {
		t.Error("tenant t5 has a series of its own beyond tenant_labels")
	}

	plain, err := New(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f := scrape(t, Handler(plain))["petrel_tenant_connections"]; f != nil {
		t.Errorf("per-tenant series exported with tenant_labels 0: %d", len(f.Metric))
	}
	if _, err := New(b, Options{TenantLabels: MaxTenantLabels + 1}); err == nil || !strings.Contains(err.Error(), "tenant_labels") {
		t.Errorf("New with too many tenant labels: %v, want an error", err)
	}
}

// TestEveryMetricDocumented checks that docs/metrics.md names every
// metric the collector can export.
func TestEveryMetricDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range Names() {
		if strings.HasSuffix(n, "_bucket") || strings.HasSuffix(n, "_sum") || strings.HasSuffix(n, "_count") {
			continue
		}
		if !bytes.Contains(doc, []byte("`"+n+"`")) {
			t.Errorf("docs/metrics.md does not document %s", n)
		}
	}
}
