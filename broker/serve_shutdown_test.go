package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
)

// TestServeRacingShutdown: Shutdown called while Serve is starting (the
// sweeper is started by the first Serve) waits for everything Serve
// started, and Serve returns ErrServerClosed. Under -race, a sweeper
// counted in the broker's wait group after Shutdown began waiting on it
// was a data race (sync.WaitGroup: an Add from zero concurrent with Wait).
func TestServeRacingShutdown(t *testing.T) {
	for i := range 1000 {
		b, err := broker.New(broker.Options{Logger: slog.New(slog.DiscardHandler), RawTransport: true})
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- b.Serve(l) }()
		// Shutdown lands at varying points of Serve's start.
		for range i % 40 {
			runtime.Gosched()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := b.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		cancel()
		if err := <-served; !errors.Is(err, broker.ErrServerClosed) {
			t.Fatalf("Serve returned %v, want ErrServerClosed", err)
		}
		_ = l.Close() // Shutdown closed it, or Serve never registered it
	}
}
