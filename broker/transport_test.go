//go:build linux

package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestRawTransportIsOptIn: a program embedding the broker gets the
// standard net path for a *net.TCPListener (its connections are read
// through net.Conn by a goroutine each and never park); with
// Options.RawTransport (as `petrel serve` sets it) an idle connection
// parks in the transport's epoll set.
func TestRawTransportIsOptIn(t *testing.T) {
	for _, tc := range []struct {
		name      string
		raw       bool
		wantParks bool
	}{
		{"default", false, false},
		{"raw", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := broker.New(broker.Options{Logger: slog.New(slog.DiscardHandler), RawTransport: tc.raw})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- b.Serve(ln) }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := b.Shutdown(ctx); err != nil {
					t.Errorf("shutdown: %v", err)
				}
				if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
					t.Errorf("serve returned %v, want ErrServerClosed", err)
				}
			})
			const n = 20
			for i := range n {
				c, _ := mqtttest.Connect(t, ln.Addr().String(), packet.V311, fmt.Sprintf("embedded-%d", i), true)
				// A round trip after CONNACK: the reader has gone back to
				// waiting for input, where a raw connection parks at once.
				c.Send(&packet.Pingreq{})
				if _, ok := c.Expect().(*packet.Pingresp); !ok {
					t.Fatal("want PINGRESP")
				}
			}
			if tc.wantParks {
				mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Parked == n }, "the idle raw connections to park")
				return
			}
			if st := b.Stats(); st.Parks != 0 || st.Parked != 0 {
				t.Fatalf("parks %d, parked %d on the net path, want none", st.Parks, st.Parked)
			}
		})
	}
}
