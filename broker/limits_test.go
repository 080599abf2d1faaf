package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestMaxConnectionsRefusesBeyondLimit(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{MaxConnections: 2})
	mqtttest.Connect(t, addr, packet.V311, "a", true)
	mqtttest.Connect(t, addr, packet.V311, "b", true)
	c := mqtttest.Dial(t, addr, packet.V311)
	if ack := c.Connect(&packet.Connect{ClientID: "c", CleanStart: true}); ack.ReasonCode != packet.ServerUnavailable {
		t.Fatalf("third client got %v, want server unavailable (3.x return code 3)", ack.ReasonCode)
	}
	c.ExpectClosed()
	c5 := mqtttest.Dial(t, addr, packet.V5)
	if ack := c5.Connect(&packet.Connect{ClientID: "c5", CleanStart: true}); ack.ReasonCode != packet.ServerBusy {
		t.Fatalf("5.0 client got %v, want server busy", ack.ReasonCode)
	}
	// Taking over a connected id adds no connection.
	mqtttest.Connect(t, addr, packet.V311, "a", true)
}

func TestTopicLimits(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{MaxTopicLength: 10, MaxTopicLevels: 3})
	c, _ := mqtttest.Connect(t, addr, packet.V311, "s", true)
	codes := c.Subscribe(1,
		packet.Subscription{Filter: "a/b/c"},
		packet.Subscription{Filter: "a/b/c/d"},
		packet.Subscription{Filter: strings.Repeat("x", 11)})
	if codes[0] != 0 || codes[1] != 0x80 || codes[2] != 0x80 {
		t.Fatalf("SUBACK codes %v, want granted then two refusals (0x80)", codes)
	}
	c.Send(&packet.Publish{Topic: "a/b/c/d", Payload: []byte("x")})
	c.ExpectClosed()
}

func TestMaxSubscriptionsPerClient(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{MaxSubscriptionsPerClient: 2})
	c, _ := mqtttest.Connect(t, addr, packet.V5, "s", true)
	codes := c.Subscribe(1, packet.Subscription{Filter: "a"}, packet.Subscription{Filter: "b"}, packet.Subscription{Filter: "c"}, packet.Subscription{Filter: "a", QoS: 1})
	want := []packet.ReasonCode{0, 0, packet.QuotaExceeded, 1}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("SUBACK codes %v, want %v (replacing an existing filter is not a new subscription)", codes, want)
		}
	}
}

func TestKeepAliveBounds(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{MinKeepAlive: 5 * time.Second, MaxKeepAlive: 60 * time.Second})
	for _, ka := range []uint16{0, 61, 4} {
		c := mqtttest.Dial(t, addr, packet.V311)
		if ack := c.Connect(&packet.Connect{ClientID: "k", CleanStart: true, KeepAlive: ka}); ack.ReasonCode != packet.ServerUnavailable {
			t.Fatalf("3.1.1 keepalive %d: CONNACK %v, want refusal", ka, ack.ReasonCode)
		}
	}
	c := mqtttest.Dial(t, addr, packet.V5)
	ack := c.Connect(&packet.Connect{ClientID: "k5", CleanStart: true, KeepAlive: 0})
	if ack.ReasonCode != packet.Success || !ack.Properties.Has(packet.PropServerKeepAlive) || ack.Properties.ServerKeepAlive != 60 {
		t.Fatalf("5.0 keepalive 0: CONNACK %v server keepalive %v, want 60 [MQTT-3.2.2-21]", ack.ReasonCode, ack.Properties.ServerKeepAlive)
	}
	mqtttest.Connect(t, addr, packet.V311, "ok", true) // keepalive 60 is within bounds
}

func TestFlappingClientIDIsDamped(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	start := time.Now()
	for i := 0; i < 7; i++ {
		mqtttest.Connect(t, addr, packet.V311, "flapper", true)
	}
	// Six takeovers: the sixth is past the limit of five and waits a second.
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("7 connects with one id took %v; the flapping takeover was not delayed", el)
	}
}

func TestSetLimitsAppliesWhileRunning(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	mqtttest.Connect(t, addr, packet.V311, "a", true)
	if err := b.SetLimits(broker.Options{MaxConnections: 1}); err != nil {
		t.Fatal(err)
	}
	c := mqtttest.Dial(t, addr, packet.V311)
	if ack := c.Connect(&packet.Connect{ClientID: "b", CleanStart: true}); ack.ReasonCode != packet.ServerUnavailable {
		t.Fatalf("CONNACK %v after lowering max connections to 1, want refusal", ack.ReasonCode)
	}
	if err := b.SetLimits(broker.Options{QueuePolicy: "drop-everything"}); err == nil {
		t.Fatal("bad limits accepted")
	}
	mqtttest.Dial(t, addr, packet.V311).Connect(&packet.Connect{ClientID: "a", CleanStart: true}) // still limited to 1: takeover allowed
}

// tenantAuth puts every client in the tenant named by its username.
type tenantAuth struct{ broker.AllowAll }

func (tenantAuth) Authenticate(_ context.Context, ci *broker.ConnectInfo) (*broker.Identity, error) {
	return &broker.Identity{Tenant: ci.Username, ClientID: ci.ClientID}, nil
}

func TestTenantQueueLimitIsShared(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: tenantAuth{}, TenantQueueMessages: 5})
	for _, who := range []struct{ id, tenant string }{{"a1", "A"}, {"a2", "A"}, {"b1", "B"}} {
		c := mqtttest.Dial(t, addr, packet.V311)
		c.Connect(&packet.Connect{ClientID: who.id, UsernameFlag: true, Username: who.tenant, KeepAlive: 60})
		c.Subscribe(1, packet.Subscription{Filter: "q", QoS: 1})
		c.Send(&packet.Disconnect{})
		c.ExpectClosed()
	}
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "pub", true)
	for i := range 4 {
		pub.Send(&packet.Publish{Topic: "q", QoS: 1, PacketID: uint16(i + 1), Payload: []byte("m")})
		pub.Expect()
	}
	a1, _ := b.ClientStatsIn("A", "a1")
	a2, _ := b.ClientStatsIn("A", "a2")
	b1, _ := b.ClientStatsIn("B", "b1")
	if a1.Queued+a2.Queued != 5 || a1.Dropped+a2.Dropped != 3 {
		t.Fatalf("tenant A queued %d+%d, dropped %d+%d; want 5 queued in all and 3 dropped", a1.Queued, a2.Queued, a1.Dropped, a2.Dropped)
	}
	if b1.Queued != 4 || b1.Dropped != 0 {
		t.Fatalf("tenant B (alone under its bound) queued %d dropped %d, want 4 and 0", b1.Queued, b1.Dropped)
	}
}

func TestAssignedClientIDSessionExpiryCapped(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{AssignedIDMaxSessionExpiry: 30 * time.Second})
	c := mqtttest.Dial(t, addr, packet.V5)
	con := &packet.Connect{CleanStart: true, KeepAlive: 60}
	con.Properties.SessionExpiryInterval = 3600
	con.Properties.Set(packet.PropSessionExpiryInterval)
	ack := c.Connect(con)
	if !ack.Properties.Has(packet.PropSessionExpiryInterval) || ack.Properties.SessionExpiryInterval != 30 {
		t.Fatalf("CONNACK session expiry %v (present %v), want 30 for an assigned client id", ack.Properties.SessionExpiryInterval, ack.Properties.Has(packet.PropSessionExpiryInterval))
	}
	named := mqtttest.Dial(t, addr, packet.V5)
	con.ClientID = "named"
	if ack := named.Connect(con); ack.Properties.Has(packet.PropSessionExpiryInterval) {
		t.Fatal("a client with its own id had its session expiry capped")
	}
}
