package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// startDeferAcceptBroker starts a broker as petrel serve does, on a
// 127.0.0.1:0 listener with TCP_DEFER_ACCEPT (internal/listener sets it),
// so that a connection is accepted with its first bytes buffered and is
// read inline by the accepting goroutine.
func startDeferAcceptBroker(t *testing.T) (*broker.Broker, string) {
	t.Helper()
	b, err := broker.New(broker.Options{RawTransport: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 5)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
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
	return b, ln.Addr().String()
}

// TestRefusedConnectionsCostNoExtraGoroutine: a connection refused before
// CONNACK success gets its CONNACK written by the goroutine that read the
// CONNECT, once its read loop ended, and one refused without CONNACK (an
// oversized CONNECT) is closed by the accepting goroutine itself: no
// writer job, and no cleanup job, per refused connection. In a flood of
// refused CONNECTs that reconnect at once (bench/floods.sh: a throttled
// password guesser, declared 16 MiB CONNECTs) each handoff to another
// goroutine was a thread wakeup and a context switch. The refusals
// themselves are unchanged: CONNACK with the code, then close
// [MQTT-3.2.2-6]; an unsupported protocol level gets 0x01
// [MQTT-3.1.2-2]; an oversized packet closes the connection without one.
func TestRefusedConnectionsCostNoExtraGoroutine(t *testing.T) {
	t.Parallel()
	const conns = 20
	v5AuthMethod := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "am", CleanStart: true}
	v5AuthMethod.Properties.AuthenticationMethod = "NO-SUCH-METHOD"
	v5AuthMethod.Properties.Set(packet.PropAuthenticationMethod)
	amBytes, err := v5AuthMethod.Append(nil, packet.V5)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		version  packet.Version
		send     []byte
		code     packet.ReasonCode // 0: closed without CONNACK
		maxEnds  uint64            // cleanup jobs handed to a pooled goroutine
		maxWrite uint64
	}{
		// Read and refused inline; the cleanup (which writes) goes to a
		// goroutine, as it may wait on a peer that does not read.
		{"unsupported protocol level, inline [MQTT-3.1.2-2]", packet.V311, rawConnect("MQTT", 9, 0x02, 60, "pl"), packet.UnsupportedProtocolVersion, conns, 0},
		// Enhanced authentication is never quick: refused on a
		// connection goroutine, which writes the CONNACK itself.
		{"5.0 unknown authentication method, on a connection goroutine", packet.V5, amBytes, packet.BadAuthenticationMethod, 0, 0},
		// Nothing to send: closed on the accepting goroutine.
		{"declared 16 MiB CONNECT over max_connect_size", packet.V311, []byte{0x10, 0xff, 0xff, 0xff, 0x07, 0x00}, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, addr := startDeferAcceptBroker(t)
			for range conns {
				c := mqtttest.Dial(t, addr, tc.version)
				c.SendRaw(tc.send)
				if tc.code == 0 {
					expectClosedSilently(t, c)
					continue
				}
				ack, ok := c.Expect().(*packet.Connack)
				if !ok || ack.ReasonCode != tc.code {
					t.Fatalf("got %+v, want CONNACK %v", ack, tc.code)
				}
				c.ExpectClosed()
			}
			// A job is counted when it starts, before it writes or
			// closes: what the client saw is counted.
			writers, ends := b.GoroutineJobs()
			if writers > tc.maxWrite || ends > tc.maxEnds {
				t.Fatalf("%d refused connections ran %d writer and %d cleanup jobs, want at most %d and %d",
					conns, writers, ends, tc.maxWrite, tc.maxEnds)
			}
		})
	}
}
