package broker_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// readSys connects a new client of tenant "A", subscribes it to filter
// and returns the values it receives, by topic: the retained ones at
// once, then live updates, for up to a second.
func readSys(t *testing.T, addr, filter string) map[string]string {
	t.Helper()
	c, ack := connectTenant(t, addr, packet.V311, "A", "sys-reader", packet.Connect{CleanStart: true})
	if ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	defer c.Conn.Close()
	if codes := c.Subscribe(1, packet.Subscription{Filter: filter}); codes[0] != 0 {
		t.Fatalf("SUBACK %v for %s", codes[0], filter)
	}
	got := map[string]string{}
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		p, err := c.Read(200 * time.Millisecond)
		if err != nil {
			break
		}
		if pub, ok := p.(*packet.Publish); ok {
			got[pub.Topic] = string(pub.Payload)
		}
	}
	return got
}

// TestSysTopics starts the $SYS publisher and reads its retained topics
// with a real client: Mosquitto's names with values that follow what the
// clients did, and a subtree per tenant.
func TestSysTopics(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: tenantAuth{}})
	if err := b.StartSys(20*time.Millisecond, "petrel test"); err != nil {
		t.Fatal(err)
	}
	if err := b.StartSys(20*time.Millisecond, "petrel test"); err == nil {
		t.Error("second StartSys succeeded")
	}
	reader, _ := connectTenant(t, addr, packet.V311, "A", "reader", packet.Connect{CleanStart: true})
	pub, _ := connectTenant(t, addr, packet.V311, "B", "pub", packet.Connect{CleanStart: true})
	reader.Subscribe(1, packet.Subscription{Filter: "data/#"})
	for range 3 {
		pub.Send(&packet.Publish{Topic: "data/x", Payload: []byte("hello")})
	}
	for range 3 {
		reader.ExpectPublish()
	}

	want := map[string]string{
		"$SYS/broker/version":                "petrel test",
		"$SYS/broker/messages/received":      "3",
		"$SYS/tenants/B/messages/received":   "3",
		"$SYS/broker/publish/bytes/received": strconv.Itoa(3 * len("data/xhello")),
	}
	var got map[string]string
	mqtttest.Eventually(t, 10*time.Second, func() bool {
		got = readSys(t, addr, "$SYS/#")
		for k, v := range want {
			if got[k] != v {
				t.Logf("%s = %q, want %q", k, got[k], v)
				return false
			}
		}
		// Sent counts the $SYS messages the reader receives too.
		// Readers come and go: at least the two clients of the test.
		for k, least := range map[string]int{"$SYS/broker/messages/sent": 3, "$SYS/tenants/A/messages/sent": 3,
			"$SYS/broker/clients/connected": 2, "$SYS/tenants/A/clients/connected": 1, "$SYS/broker/subscriptions/count": 1} {
			if n, err := strconv.Atoi(got[k]); err != nil || n < least {
				t.Logf("%s = %q, want at least %d", k, got[k], least)
				return false
			}
		}
		return true
	}, "the $SYS values")

	if !strings.HasSuffix(got["$SYS/broker/uptime"], " seconds") {
		t.Errorf("uptime %q, want \"N seconds\"", got["$SYS/broker/uptime"])
	}
	for _, topic := range []string{"$SYS/broker/load/messages/received/1min", "$SYS/broker/load/messages/sent/15min", "$SYS/broker/retained messages/count", "$SYS/broker/store/messages/count"} {
		if _, ok := got[topic]; !ok {
			t.Errorf("%s missing", topic)
		}
	}
	// '#' at the first level does not match $SYS [MQTT-4.7.2-1].
	if all := readSys(t, addr, "#"); len(all) != 0 {
		t.Errorf("# matched %d $SYS topics", len(all))
	}

	// A tenant whose clients and sessions are gone has its subtree cleared.
	pub.Send(&packet.Disconnect{})
	mqtttest.Eventually(t, 10*time.Second, func() bool {
		_, ok := readSys(t, addr, "$SYS/tenants/#")["$SYS/tenants/B/messages/received"]
		return !ok
	}, "tenant B's subtree cleared")
}

// TestSysPublishRefused checks that a client cannot publish into $SYS:
// the broker's values stay [DESIGN.md section 3].
func TestSysPublishRefused(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	if err := b.StartSys(20*time.Millisecond, "v"); err != nil {
		t.Fatal(err)
	}
	c, _ := mqtttest.Connect(t, addr, packet.V311, "liar", true)
	c.Send(&packet.Publish{Topic: "$SYS/broker/version", Retain: true, Payload: []byte("forged")})
	c.Send(&packet.Publish{Topic: "$SYS/tenants/X/clients/connected", Retain: true, Payload: []byte("99")})
	got := readSys(t, addr, "$SYS/#")
	if got["$SYS/broker/version"] != "v" {
		t.Errorf("$SYS/broker/version = %q, want the broker's", got["$SYS/broker/version"])
	}
	if v, ok := got["$SYS/tenants/X/clients/connected"]; ok {
		t.Errorf("a client's $SYS publish was kept: %q", v)
	}
}
