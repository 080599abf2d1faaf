package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/ratelog"
	"github.com/petrel-mqtt/petrel/packet"
)

// logCapture is a slog.Handler keeping every record at INFO and above
// (the default level), for tests that assert what an operator sees.
type logCapture struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (c *logCapture) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r.Clone())
	return nil
}
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCapture) WithGroup(string) slog.Handler      { return c }

// loggedLine is one captured record.
type loggedLine struct {
	level slog.Level
	msg   string
	attrs map[string]string
	text  string // every value, for "no secret anywhere"
}

// lines returns the records with message msg ("" for all).
func (c *logCapture) lines(msg string) []loggedLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []loggedLine
	for _, r := range c.recs {
		if msg != "" && r.Message != msg {
			continue
		}
		l := loggedLine{level: r.Level, msg: r.Message, attrs: map[string]string{}, text: r.Message}
		r.Attrs(func(a slog.Attr) bool {
			l.attrs[a.Key] = a.Value.String()
			l.text += " " + a.Key + "=" + a.Value.String()
			return true
		})
		out = append(out, l)
	}
	return out
}

// startLogged starts a broker with o whose INFO lines go to the returned
// capture, and returns a function that shuts it down (reporting the
// lines held back by the rate limits); the test's end shuts it down too.
func startLogged(t *testing.T, o broker.Options) (string, *logCapture, func()) {
	t.Helper()
	logs := &logCapture{}
	o.Logger = slog.New(logs)
	b, err := broker.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve(ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
				t.Errorf("serve returned %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), logs, stop
}

// tlsClientHello is the start of a TLS 1.2 ClientHello record, as a TLS
// client sends it to a port it believes is MQTT over TLS.
var tlsClientHello = []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 1, 2, 3, 4, 5, 6, 7, 8}

// TestFailedConnectionLoggedAtInfo: a connection that sends bytes that
// are no CONNECT [MQTT-3.1.0-1], or nothing within the connect timeout,
// leaves an INFO line naming its address and why. These were DEBUG only.
func TestFailedConnectionLoggedAtInfo(t *testing.T) {
	for _, tc := range []struct {
		name, reason, err string
		send              []byte
	}{
		{"garbage", "protocol error", "maximum packet size", []byte{0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"TLS hello on the plain port", "protocol error", "TLS handshake on a plain MQTT listener", tlsClientHello},
		{"PINGREQ first", "protocol error", "[MQTT-3.1.0-1]", []byte{0xc0, 0x00}},
		{"silent", "no CONNECT within the connect timeout", "timeout", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, logs, _ := startLogged(t, broker.Options{ConnectTimeout: 300 * time.Millisecond})
			c := mqtttest.Dial(t, addr, packet.V311)
			if tc.send != nil {
				c.SendRaw(tc.send)
			} else {
				c.SendRaw([]byte{0x10}) // one byte, so the kernel hands the connection over (TCP_DEFER_ACCEPT)
			}
			c.ExpectClosed()
			mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return len(logs.lines("connection failed")) == 1 }, "a connection failed line")
			l := logs.lines("connection failed")[0]
			if l.level != slog.LevelInfo || l.attrs["reason"] != tc.reason || !strings.HasPrefix(l.attrs["remote"], "127.0.0.1:") ||
				l.attrs[broker.AuditKey] != broker.AuditConnectFailed || !strings.Contains(l.attrs["err"], tc.err) {
				t.Fatalf("line %+v: want INFO, reason %q, the remote address, an err with %q and the audit event", l, tc.reason, tc.err)
			}
		})
	}
}

// TestFailedConnectionFloodRateLimited: 40 connections of garbage from one
// address write one line, and the report of the 39 others when the
// broker stops, not 40 lines.
func TestFailedConnectionFloodRateLimited(t *testing.T) {
	addr, logs, stop := startLogged(t, broker.Options{})
	const n = 40
	for range n {
		c := mqtttest.Dial(t, addr, packet.V311)
		c.SendRaw([]byte{0xff, 0xff, 0xff, 0xff, 0x7f})
		c.ExpectClosed()
		// ExpectClosed returns once the client sees the close; the
		// broker logs right after, in its cleanup.
	}
	// An honest client still connects.
	mqtttest.Connect(t, addr, packet.V311, "honest", true)
	stop()
	if got := len(logs.lines("connection failed")); got != 1 {
		t.Fatalf("%d 'connection failed' lines for %d bad connections from one address, want 1", got, n)
	}
	rep := logs.lines(ratelog.SuppressedMsg)
	if len(rep) != 1 || rep[0].attrs["count"] != "39" || rep[0].attrs["first"] != "connection failed" ||
		!strings.HasPrefix(rep[0].attrs["remote"], "127.0.0.1:") {
		t.Fatalf("reports %+v, want one naming the 39 held back with the first one's address", rep)
	}
}

// tenantRoles grants the username as tenant and lets a client subscribe
// and publish only under its tenant's level.
type tenantRoles struct{ broker.AllowAll }

func (tenantRoles) Authenticate(_ context.Context, ci *broker.ConnectInfo) (*broker.Identity, error) {
	return &broker.Identity{Tenant: ci.Username, ClientID: ci.ClientID, Method: "test", Principal: "user-" + ci.Username}, nil
}
func (tenantRoles) CanPublish(id *broker.Identity, topic string, _ byte, _ bool) bool {
	return strings.HasPrefix(topic, id.Tenant+"/")
}
func (tenantRoles) CanSubscribe(id *broker.Identity, filter string, qos byte) broker.SubscribeDecision {
	return broker.SubscribeDecision{OK: strings.HasPrefix(filter, id.Tenant+"/"), MaxQoS: qos}
}
func (tenantRoles) CanReceive(id *broker.Identity, topic string) bool {
	return strings.HasPrefix(topic, id.Tenant+"/")
}

// TestRefusedSubscribeIsAudited: a client of tenant A subscribing to B's
// topics is refused per filter [MQTT-3.9.3-2] and leaves an audit line
// naming tenant, client, principal and filter; a probe of 12 filters is
// one line and one report counting the 11 others, not 12 lines.
func TestRefusedSubscribeIsAudited(t *testing.T) {
	addr, logs, stop := startLogged(t, broker.Options{Authenticator: tenantRoles{}, Authorizer: tenantRoles{}})
	c := mqtttest.Dial(t, addr, packet.V311)
	c.Connect(&packet.Connect{ClientID: "probe", Username: "A", UsernameFlag: true, KeepAlive: 60, CleanStart: true})
	filters := []string{"B/read/#", "B/alert/#", "C/read/#", "B/a", "B/b", "B/c", "B/d", "B/e", "B/f", "B/g", "B/h", "B/i"}
	for i, f := range filters {
		codes := c.Subscribe(uint16(i+1), packet.Subscription{Filter: f, QoS: 1})
		if codes[0] != 0x80 {
			t.Fatalf("%s: SUBACK %v, want 0x80 [MQTT-3.9.3-2]", f, codes[0])
		}
	}
	if codes := c.Subscribe(100, packet.Subscription{Filter: "A/read/#", QoS: 1}); codes[0] != 1 {
		t.Fatalf("own tenant's filter: SUBACK %v", codes[0])
	}
	stop()
	got := logs.lines("subscription refused")
	if len(got) != 1 {
		t.Fatalf("%d lines for 12 refused filters, want 1 (rate-limited per client)", len(got))
	}
	want := map[string]string{"tenant": "A", "client": "probe", "principal": "user-A", "filter": "B/read/#", broker.AuditKey: broker.AuditSubscribeRefused}
	for k, v := range want {
		if got[0].attrs[k] != v {
			t.Errorf("line %+v: %s = %q, want %q", got[0], k, got[0].attrs[k], v)
		}
	}
	rep := logs.lines(ratelog.SuppressedMsg)
	if len(rep) != 1 || rep[0].attrs["count"] != "11" || rep[0].attrs["filter"] != "B/alert/#" || rep[0].attrs["tenant"] != "A" {
		t.Fatalf("reports %+v, want one counting 11 refusals, e.g. B/alert/#, of tenant A", rep)
	}
}

// TestRefusedPublishIsAudited: an unauthorized PUBLISH is refused (the
// connection closed, DESIGN.md section 3) and audited with its topic.
func TestRefusedPublishIsAudited(t *testing.T) {
	addr, logs, _ := startLogged(t, broker.Options{Authenticator: tenantRoles{}, Authorizer: tenantRoles{}})
	c := mqtttest.Dial(t, addr, packet.V311)
	c.Connect(&packet.Connect{ClientID: "pub", Username: "A", UsernameFlag: true, KeepAlive: 60, CleanStart: true})
	c.Send(&packet.Publish{Topic: "B/read/m1/gas", QoS: 1, PacketID: 1, Payload: []byte("x")})
	c.ExpectClosed()
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return len(logs.lines("publish refused")) == 1 }, "a publish refused line")
	l := logs.lines("publish refused")[0]
	if l.attrs["topic"] != "B/read/m1/gas" || l.attrs["tenant"] != "A" || l.attrs[broker.AuditKey] != broker.AuditPublishRefused {
		t.Fatalf("line %+v", l)
	}
}

// TestConnectLineNamesPrincipalAndMethod: the connect line carries who
// vouched for the client and how, beside the username the client sent.
func TestConnectLineNamesPrincipalAndMethod(t *testing.T) {
	addr, logs, _ := startLogged(t, broker.Options{Authenticator: tenantRoles{}, Authorizer: tenantRoles{}})
	c := mqtttest.Dial(t, addr, packet.V5)
	c.Connect(&packet.Connect{ClientID: "m1", Username: "A", UsernameFlag: true, KeepAlive: 60, CleanStart: true})
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return len(logs.lines("client connected")) == 1 }, "a connect line")
	l := logs.lines("client connected")[0]
	if l.attrs["principal"] != "user-A" || l.attrs["method"] != "test" || l.attrs["tenant"] != "A" || l.attrs[broker.AuditKey] != broker.AuditConnect {
		t.Fatalf("connect line %+v: want principal user-A, method test, tenant A, audit connect", l)
	}
}

// TestRefusedConnectRateLimited: CONNACK refusals from one address are
// logged once per interval with their code, the others reported.
func TestRefusedConnectRateLimited(t *testing.T) {
	addr, logs, stop := startLogged(t, broker.Options{MinKeepAlive: 30 * time.Second})
	for range 10 {
		c := mqtttest.Dial(t, addr, packet.V311)
		ack := c.Connect(&packet.Connect{ClientID: "k", KeepAlive: 1, CleanStart: true})
		if ack.ReasonCode == packet.Success {
			t.Fatal("keepalive below the minimum accepted")
		}
		c.ExpectClosed()
	}
	stop()
	got := logs.lines("connection refused")
	if len(got) != 1 || got[0].attrs[broker.AuditKey] != broker.AuditConnectRefused || got[0].attrs["code"] == "" {
		t.Fatalf("lines %+v, want one with its code and audit event", got)
	}
	if rep := logs.lines(ratelog.SuppressedMsg); len(rep) != 1 || rep[0].attrs["count"] != "9" {
		t.Fatalf("reports %+v, want one counting 9", rep)
	}
}
