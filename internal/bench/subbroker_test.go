package bench

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// forward relays every PUBLISH under petrel-bench/ from the broker at
// from to the broker at to (QoS 0), standing in for a cluster's route
// between two nodes, until the test ends.
func forward(t *testing.T, from, to string) {
	t.Helper()
	src := mqtttest.Dial(t, from, packet.V311)
	if ack := src.Connect(&packet.Connect{ClientID: "relay-in", CleanStart: true}); ack.ReasonCode != packet.Success {
		t.Fatalf("relay CONNACK %v", ack.ReasonCode)
	}
	src.Subscribe(1, packet.Subscription{Filter: "petrel-bench/#"})
	dst := mqtttest.Dial(t, to, packet.V311)
	if ack := dst.Connect(&packet.Connect{ClientID: "relay-out", CleanStart: true}); ack.ReasonCode != packet.Success {
		t.Fatalf("relay CONNACK %v", ack.ReasonCode)
	}
	go func() { // ends when the test's cleanup closes the connections
		var buf []byte
		for {
			p, err := packet.ReadPacket(src.Conn, packet.V311, 0)
			if err != nil {
				return
			}
			pub, ok := p.(*packet.Publish)
			if !ok {
				continue
			}
			if buf, err = (&packet.Publish{Topic: pub.Topic, Payload: pub.Payload}).Append(buf[:0], packet.V311); err != nil {
				return
			}
			if _, err := dst.Conn.Write(buf); err != nil {
				return
			}
		}
	}()
}

// TestSubBroker runs the subscribers on another broker than the
// publishers (--sub-host, --sub-port): alone, the subscribers' broker
// gets none of the publishers' messages, so nothing is delivered; with
// a relay between the two brokers every message arrives.
func TestSubBroker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		relay bool
	}{{"separate brokers", false}, {"relayed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			pubHost, pubPort := startBroker(t)
			subHost, subPort := startBroker(t)
			if tc.relay {
				forward(t, net.JoinHostPort(pubHost, strconv.Itoa(pubPort)), net.JoinHostPort(subHost, strconv.Itoa(subPort)))
			}
			r, err := Run(context.Background(), Config{Scenario: "latency", Host: pubHost, Port: pubPort, SubHost: subHost,
				SubPort: subPort, Rate: 500, Count: 50, Duration: 2 * time.Second, Drain: 3 * time.Second, Settle: 50 * time.Millisecond})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if want := net.JoinHostPort(subHost, strconv.Itoa(subPort)); r.SubBroker != want {
				t.Errorf("sub_broker %q, want %q", r.SubBroker, want)
			}
			if r.Sent != 50 || r.Expected != 50 {
				t.Fatalf("sent %d, expected %d, want 50", r.Sent, r.Expected)
			}
			if tc.relay {
				checkDelivery(t, r)
			} else if r.Received != 0 || r.Lost != 50 {
				t.Errorf("received %d (lost %d) on a broker nothing was published to", r.Received, r.Lost)
			}
		})
	}
}

// TestSubBrokerConfig refuses what --sub-host and --sub-port cannot mean.
func TestSubBrokerConfig(t *testing.T) {
	for _, c := range []Config{
		{Scenario: "fanin", SubHost: "10.0.0.1"},
		{Scenario: "fanin", SubPort: 70000},
		{Scenario: "conns", SubPort: 1884},
		{Scenario: "retained", SubPort: 1884},
		{Scenario: "fanin", Settle: -time.Second},
	} {
		if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
}
