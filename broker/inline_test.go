package broker_test

import (
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestInlineReaderNeverStallsAccepting: Serve reads a new connection's
// CONNECT on the accepting goroutine only as far as that goes without
// waiting (conn.serveInline). A connection that sent nothing and one that
// sent half its CONNECT do not delay the next connection's CONNACK (with a
// connect timeout of a minute, a reader waiting on the accepting goroutine
// would hold it past the client's timeout), and each is served once it
// sends the rest.
func TestInlineReaderNeverStallsAccepting(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{ConnectTimeout: time.Minute})
	silent := mqtttest.Dial(t, addr, packet.V311)
	half := mqtttest.Dial(t, addr, packet.V311)
	connect := rawConnect("MQTT", 4, 0x02, 60, "half")
	half.SendRaw(connect[:7])
	time.Sleep(50 * time.Millisecond) // both accepted and read from before the next dial

	mqtttest.Connect(t, addr, packet.V311, "next", true) // fails unless CONNACK comes within the client's timeout

	half.SendRaw(connect[7:])
	if ack := expect[*packet.Connack](t, half); ack.ReasonCode != packet.Success {
		t.Fatalf("half: CONNACK %v", ack.ReasonCode)
	}
	if ack := silent.Connect(&packet.Connect{ClientID: "silent", CleanStart: true, KeepAlive: 60}); ack.ReasonCode != packet.Success {
		t.Fatalf("silent: CONNACK %v", ack.ReasonCode)
	}
	// The connections work past CONNACK: a message from one to another.
	subscribe(t, half, 1, "inline/t", 0)
	publish(t, silent, "inline/t", 0, false, "hello", 0)
	receive(t, half, "inline/t", "hello", 0)
}
