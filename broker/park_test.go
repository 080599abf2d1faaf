//go:build linux

package broker_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestIdleConnectionsHoldNoGoroutine: connected idle clients park without
// a reader goroutine, and wake for traffic and for their keepalive.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	first, _ := mqtttest.Connect(t, addr, packet.V311, "idle-0", true)
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()
	const n = 100
	clients := []*mqtttest.Client{first}
	for i := 1; i <= n; i++ {
		c, _ := mqtttest.Connect(t, addr, packet.V311, fmt.Sprintf("idle-%d", i), true)
		clients = append(clients, c)
	}
	mqtttest.Eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() < base+n/10 },
		fmt.Sprintf("%d idle connections to park (goroutines %d, base %d)", n, runtime.NumGoroutine(), base))
	// Parked connections wake for traffic...
	for _, c := range clients[:10] {
		c.Send(&packet.Pingreq{})
		if _, ok := c.Expect().(*packet.Pingresp); !ok {
			t.Fatal("want PINGRESP from a parked connection")
		}
	}
	// ... and for their keepalive deadline [MQTT-3.1.2-24].
	k := mqtttest.Dial(t, addr, packet.V311)
	k.Connect(&packet.Connect{ClientID: "sleepy", CleanStart: true, KeepAlive: 1})
	start := time.Now()
	k.ExpectClosed()
	if el := time.Since(start); el < time.Second || el > 3*time.Second {
		t.Fatalf("parked connection with keepalive 1 s closed after %v, want about 1.5 s", el)
	}
}

// TestBusyConnectionDoesNotPark: a client sending more often than the
// parking grace keeps its reader; parking and waking per packet would
// cost a goroutine start and two epoll calls each time.
func TestBusyConnectionDoesNotPark(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	c, _ := mqtttest.Connect(t, addr, packet.V311, "busy", true)
	// Once idle, it parks (perhaps before its CONNECT too).
	mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Parked == 1 }, "the idle connection to park")
	base := b.Stats().Parks
	for range 20 {
		c.Send(&packet.Pingreq{})
		if _, ok := c.Expect().(*packet.Pingresp); !ok {
			t.Fatal("want PINGRESP")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Woken by the first PINGREQ, it reads the next 19 without parking
	// (a few parks are tolerated for a CI machine stalling the test for
	// more than the grace; parking per packet would give 20).
	if p := b.Stats().Parks - base; p > 5 {
		t.Fatalf("parks = %d after 20 packets 10 ms apart, want about 1 (no park between packets)", p)
	}
}

// TestSlowClientStaysRaw: a client that sends less often than the parking
// grace (a keepalive ping) parks again right after each packet, so its
// raw connection (internal/transport) never becomes a netpoller connection
// and no goroutine or buffer waits for its next packet.
func TestSlowClientStaysRaw(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	c, _ := mqtttest.Connect(t, addr, packet.V311, "slow", true)
	mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Parked == 1 }, "the new connection to park")
	base := b.Stats().Parks
	for i := range 4 {
		time.Sleep(2 * 100 * time.Millisecond) // twice the grace
		c.Send(&packet.Pingreq{})
		if _, ok := c.Expect().(*packet.Pingresp); !ok {
			t.Fatal("want PINGRESP")
		}
		// Parked again (at once: a grace read would promote it, below).
		mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Parks == base+uint64(i+1) && b.Stats().Parked == 1 },
			fmt.Sprintf("the connection to park again after ping %d (parks %d)", i+1, b.Stats().Parks-base))
	}
	if p := b.Stats().Promotions; p != 0 {
		t.Fatalf("promotions = %d for a client pinging every 200 ms, want 0", p)
	}
}

// TestParkedReaderFollowsWriterPromotion: a subscriber that only receives
// parks its reader on its raw descriptor; when its writer finds the socket
// full, the connection becomes a netpoller connection with a new
// descriptor, and the parked reader's registration must move with it, or
// the subscriber's next packet would never wake it.
func TestParkedReaderFollowsWriterPromotion(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "sink", true)
	time.Sleep(2 * 100 * time.Millisecond) // not busy: the reader parks right after SUBSCRIBE
	sub.Send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "flood"}}})
	if _, ok := sub.Expect().(*packet.Suback); !ok {
		t.Fatal("want SUBACK")
	}
	mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Parked == 1 }, "the subscriber to park after SUBSCRIBE")
	if p := b.Stats().Promotions; p != 0 {
		t.Fatalf("promotions = %d before the flood, want 0", p)
	}
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "source", true)
	mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Parked == 2 }, "the publisher to park")
	const n, size = 300, 64 << 10 // far more than the socket buffers hold
	payload := make([]byte, size)
	for range n {
		pub.Send(&packet.Publish{Topic: "flood", Payload: payload})
	}
	// The publisher's reader and the subscriber's writer each promote
	// their connection: the subscriber's while its reader is parked.
	mqtttest.Eventually(t, 10*time.Second, func() bool { return b.Stats().Promotions == 2 },
		fmt.Sprintf("both connections to be promoted (promotions %d)", b.Stats().Promotions))
	if reg, fd, parked := b.ParkState("sink"); reg != fd || !parked {
		t.Fatalf("subscriber registered under descriptor %d, its descriptor is %d (parked: %v): the registration did not move", reg, fd, parked)
	}
	// A new connection may take the number the subscriber's raw
	// descriptor had (the lowest free one) and park under it: an event
	// for the subscriber still registered under that number would wake
	// the newcomer instead.
	_, _ = mqtttest.Connect(t, addr, packet.V311, "newcomer", true)
	mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Parked == 3 }, "all three connections to park")
	sub.Send(&packet.Pingreq{})
	got := 0
	for {
		p, err := sub.Read(mqtttest.Timeout)
		if err != nil {
			t.Fatalf("after %d of %d messages, no PINGRESP: %v", got, n, err)
		}
		switch p := p.(type) {
		case *packet.Publish:
			got++
		case *packet.Pingresp:
			if got > n {
				t.Fatalf("%d messages, want at most %d", got, n)
			}
			return // the parked reader woke on its moved registration
		default:
			t.Fatalf("unexpected %s", p.Type())
		}
	}
}
