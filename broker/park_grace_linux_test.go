//go:build linux

package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// deadlineConn is a pass-through wrapper (the broker reads and parks the
// TCP connection under it) that counts the read deadlines set on it.
type deadlineConn struct {
	*net.TCPConn
	sets *atomic.Int64
}

func (c *deadlineConn) NetConn() net.Conn { return c.TCPConn }
func (c *deadlineConn) PassThrough()      {}
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.sets.Add(1)
	return c.TCPConn.SetReadDeadline(t)
}

// deadlineListener wraps every accepted connection in a deadlineConn.
type deadlineListener struct {
	net.Listener
	sets atomic.Int64
}

func (l *deadlineListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &deadlineConn{TCPConn: nc.(*net.TCPConn), sets: &l.sets}, nil
}

// TestBusyConnectionKeepsItsDeadline: a client sending every few
// milliseconds, for several parking graces, has its read deadline set a
// few times, not once per packet (each move of a socket's deadline updates
// its runtime timer, and the first after the timer came due wakes an idle
// runtime thread); once it goes quiet it still parks.
func TestBusyConnectionKeepsItsDeadline(t *testing.T) {
	b, err := broker.New(broker.Options{Logger: slog.New(slog.DiscardHandler), RawTransport: true})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &deadlineListener{Listener: inner}
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

	c, _ := mqtttest.Connect(t, inner.Addr().String(), packet.V311, "busy", true)
	mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Parked == 1 }, "the new connection to park")
	sets0, parks0 := ln.sets.Load(), b.Stats().Parks
	const packets = 150 // 3 ms apart: about four parking graces
	for range packets {
		c.Send(&packet.Pingreq{})
		if _, ok := c.Expect().(*packet.Pingresp); !ok {
			t.Fatal("want PINGRESP")
		}
		time.Sleep(3 * time.Millisecond)
	}
	// Sets a park explains: the grace deadline before it, the deadline
	// cleared after it. A machine stalling the test for more than the
	// grace parks the connection between packets; what is left is what
	// the busy reader set.
	sets, parks := ln.sets.Load()-sets0, b.Stats().Parks-parks0
	t.Logf("%d read deadlines set for %d packets, %d parks", sets, packets, parks)
	if busy := sets - 2*int64(parks); busy > 8 {
		t.Fatalf("%d read deadlines set for %d packets (%d parks), want a few: the deadline moved per packet", sets, packets, parks)
	}
	mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Parked == 1 }, "the connection to park once quiet")
}
