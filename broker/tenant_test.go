package broker_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// Client ids are a namespace per tenant (DESIGN.md section 3). The tests
// here use tenantAuth (limits_test.go): the username names the tenant, and
// it is a QuickAuthenticator, so CONNECTs take the inline path. The
// end-to-end tests with internal/auth are interop/tenant_sessions_test.go.

// connectTenant connects client id in tenant and returns the client and
// its CONNACK.
func connectTenant(t *testing.T, addr string, v packet.Version, tenant, id string, p packet.Connect) (*mqtttest.Client, *packet.Connack) {
	t.Helper()
	c := mqtttest.Dial(t, addr, v)
	p.ClientID, p.Username, p.UsernameFlag = id, tenant, true
	if p.KeepAlive == 0 {
		p.KeepAlive = 60
	}
	return c, c.Connect(&p)
}

// answersPing fails the test unless c answers PINGREQ.
func answersPing(t *testing.T, c *mqtttest.Client, who string) {
	t.Helper()
	c.Send(&packet.Pingreq{})
	if p, err := c.Read(mqtttest.Timeout); err != nil {
		t.Fatalf("%s: connection lost: %v", who, err)
	} else if _, ok := p.(*packet.Pingresp); !ok {
		t.Fatalf("%s: got %s, want PINGRESP", who, p.Type())
	}
}

// TestConnectionLimitNotBypassedWithAnotherTenantsClientID: at
// MaxConnections, a CONNECT naming a client id that is online in another
// tenant is no takeover (the session keys differ) and is refused (3.x:
// server unavailable, 5.0: server busy); the other tenant's client stays.
// A takeover within the tenant is still admitted [MQTT-3.1.4-2].
func TestConnectionLimitNotBypassedWithAnotherTenantsClientID(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: tenantAuth{}, MaxConnections: 1})
			a, ack := connectTenant(t, addr, v, "A", "meter-001", packet.Connect{CleanStart: true})
			if ack.ReasonCode != packet.Success {
				t.Fatalf("A: CONNACK %v", ack.ReasonCode)
			}
			want := packet.ServerUnavailable
			if v == packet.V5 {
				want = packet.ServerBusy
			}
			b, ack := connectTenant(t, addr, v, "B", "meter-001", packet.Connect{CleanStart: true})
			if ack.ReasonCode != want {
				t.Fatalf("B with A's client id at the connection limit: CONNACK %v, want %v", ack.ReasonCode, want)
			}
			b.ExpectClosed()
			answersPing(t, a, "A")
			if _, ack := connectTenant(t, addr, v, "A", "meter-001", packet.Connect{CleanStart: true}); ack.ReasonCode != packet.Success {
				t.Fatalf("A's takeover at the connection limit: CONNACK %v", ack.ReasonCode)
			}
			a.ExpectClosed()
		})
	}
}

// TestTenantWithNULRefused: an Identity whose tenant holds U+0000 would
// make session keys ambiguous; the CONNECT is refused as not authorized.
func TestTenantWithNULRefused(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: nulTenantAuth{}})
	c, ack := connectTenant(t, addr, packet.V5, "A", "meter-001", packet.Connect{CleanStart: true})
	if ack.ReasonCode != packet.NotAuthorized {
		t.Fatalf("tenant with NUL: CONNACK %v, want 0x87", ack.ReasonCode)
	}
	c.ExpectClosed()
}

// nulTenantAuth puts every client in a tenant holding a NUL.
type nulTenantAuth struct{ broker.AllowAll }

func (nulTenantAuth) Authenticate(_ context.Context, ci *broker.ConnectInfo) (*broker.Identity, error) {
	return &broker.Identity{Tenant: ci.Username + "\x00x"}, nil
}

// TestQuickTenantTakeoverNeverStallsAccepting: with a quick authenticator
// the accept loop handles CONNECTs itself (conn.serveInline), and learns
// the tenant, hence the session key, only by authenticating. A takeover
// then waits (here the flap damping's second), so attach hands it to a
// connection goroutine: a client connecting meanwhile gets its CONNACK
// before the damped takeover gets its own.
func TestQuickTenantTakeoverNeverStallsAccepting(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: tenantAuth{}})
	var last *mqtttest.Client
	for i := 0; i < 6; i++ { // the first and five takeovers: the damping's limit
		c, ack := connectTenant(t, addr, packet.V311, "A", "flap", packet.Connect{CleanStart: true})
		if ack.ReasonCode != packet.Success {
			t.Fatalf("connect %d: CONNACK %v", i, ack.ReasonCode)
		}
		last = c
	}
	damped := mqtttest.Dial(t, addr, packet.V311)
	damped.Send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: "flap", Username: "A", UsernameFlag: true, CleanStart: true, KeepAlive: 60})
	// An honest client of another tenant, and one with the same id in
	// another tenant, connect while the takeover is damped.
	for _, tenant := range []string{"B", "C"} {
		id := "honest"
		if tenant == "C" {
			id = "flap"
		}
		if _, ack := connectTenant(t, addr, packet.V311, tenant, id, packet.Connect{CleanStart: true}); ack.ReasonCode != packet.Success {
			t.Fatalf("%s/%s: CONNACK %v", tenant, id, ack.ReasonCode)
		}
	}
	if p, err := damped.Read(time.Millisecond); err == nil {
		t.Fatalf("the damped takeover got %s before the clients connecting after it: the accept loop waited for it", p.Type())
	}
	if ack := expect[*packet.Connack](t, damped); ack.ReasonCode != packet.Success {
		t.Fatalf("damped takeover: CONNACK %v", ack.ReasonCode)
	}
	last.ExpectClosed()
}

// logBuffer collects a broker's log lines; safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// has reports whether a line with message msg carries every attribute of
// attrs (key=value as slog's text handler writes them).
func (l *logBuffer) has(msg string, attrs ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(l.b.String(), "\n") {
		if !strings.Contains(line, `msg="`+msg+`"`) {
			continue
		}
		all := true
		for _, a := range attrs {
			all = all && strings.Contains(line+" ", " "+a+" ")
		}
		if all {
			return true
		}
	}
	return false
}

// TestSessionLogLinesNameTenantAndClient: the lines an operator follows a
// client id by carry its tenant beside it, since the id alone names a
// session in every tenant.
func TestSessionLogLinesNameTenantAndClient(t *testing.T) {
	logs := &logBuffer{}
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: tenantAuth{},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	con := packet.Connect{CleanStart: true}
	con.Properties.SessionExpiryInterval = 1
	con.Properties.Set(packet.PropSessionExpiryInterval)
	old, _ := connectTenant(t, addr, packet.V5, "A", "meter-001", con)
	c, _ := connectTenant(t, addr, packet.V5, "A", "meter-001", con)
	old.ExpectClosed()
	c.Send(&packet.Disconnect{})
	c.ExpectClosed()
	for _, msg := range []string{"client connected", "client id taken over", "client disconnected", "session expired"} {
		mqtttest.Eventually(t, mqtttest.Timeout, func() bool {
			return logs.has(msg, "tenant=A", "client=meter-001")
		}, "log line "+msg+" with tenant=A client=meter-001")
	}
}
