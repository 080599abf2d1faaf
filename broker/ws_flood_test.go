package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestWSUpgradeFloodLetsHonestClientsConnect: an attacker holds 400 TCP
// connections open on a ws listener without sending a byte (or its
// upgrade request), from 8 loopback addresses. The listener keeps at most
// max_upgrades (100) of them pending, at most 25 per address, closing the
// oldest for newcomers: the goroutines and memory they hold stay bounded
// (before, each held a goroutine and the HTTP server's buffers until its
// 10 s header timeout, however many), and an honest MQTT-over-WebSocket
// client gets its CONNACK while the flood is held.
func TestWSUpgradeFloodLetsHonestClientsConnect(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the flood binds source addresses in 127.0.0.0/8, all loopback on Linux only")
	}
	const slots, share, flood = 100, 25, 400
	ln, err := listener.Listen(context.Background(), listener.Config{
		Name: "ws", Type: listener.TypeWS, Address: "127.0.0.1:0",
		MaxUpgrades: slots, MaxUpgradesPerAddress: share,
		// The attacker's connections are held for the whole test: the
		// count bound, not the deadlines, is what is tested.
		UpgradeRequestTimeout: time.Minute, UpgradeTimeout: time.Minute,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve(ln) }()
	t.Cleanup(func() {
		_ = b.Shutdown(context.Background()) // its error shows in Serve's
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	honest := func(i int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
		if err != nil {
			t.Fatalf("honest client %d: %v", i, err)
		}
		c := mqtttest.NewClient(t, websocket.NetConn(context.Background(), ws, websocket.MessageBinary), packet.V311)
		if ack := c.Connect(&packet.Connect{ClientID: fmt.Sprintf("honest-%d", i), CleanStart: true, KeepAlive: 60}); ack.ReasonCode != packet.Success {
			t.Fatalf("honest client %d: CONNACK %v", i, ack.ReasonCode)
		}
		_ = c.Conn.Close() // done with it
	}
	honest(0) // warm: the HTTP server and the broker's first connection
	before := snapshot(t)

	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			_ = c.Close() // the flood is over
		}
	})
	for i := range flood {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", 2+i%8))}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			continue // the backlog refused it: the flood goes on
		}
		held = append(held, c)
	}
	// TCP_DEFER_ACCEPT hands silent connections over about a second late.
	mqtttest.Eventually(t, 30*time.Second, func() bool {
		st := ln.UpgradeStats()
		return st.Evicted+st.RefusedPerAddress+uint64(st.InProgress) >= uint64(len(held))
	}, "every silent connection handed to the listener")
	for i := 1; i <= 3; i++ {
		honest(i) // while the flood is held
	}
	during := snapshot(t)
	st := ln.UpgradeStats()
	t.Logf("%d silent connections held: %+v; goroutines %d -> %d, RSS %.1f -> %.1f MiB", len(held), st,
		before.goroutines, during.goroutines, float64(before.rss)/(1<<20), float64(during.rss)/(1<<20))
	if st.InProgress > slots {
		t.Fatalf("%d upgrades pending, above max_upgrades %d", st.InProgress, slots)
	}
	if st.Evicted == 0 {
		t.Fatalf("nothing evicted with %d silent connections and %d slots: %+v", len(held), slots, st)
	}
	// One goroutine per pending upgrade (the HTTP server's), some slack
	// for the connections being closed.
	if grown := during.goroutines - before.goroutines; grown > slots+50 {
		t.Fatalf("goroutines grew by %d with %d silent connections held; want at most %d", grown, len(held), slots+50)
	}
	if grown := int64(during.rss) - int64(before.rss); grown > 64<<20 {
		t.Fatalf("RSS grew by %.0f MiB during the flood", float64(grown)/(1<<20))
	}
}
