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
	// Once idle, it parks.
	mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Parks == 1 }, "the idle connection to park once")
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
	if p := b.Stats().Parks; p > 5 {
		t.Fatalf("parks = %d after 20 packets 10 ms apart, want about 1 (no park between packets)", p)
	}
}
