package main

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
)

// TestPubSubOverWebSocket runs petrel pub and sub with --ws against a
// broker on a ws listener with a custom path.
func TestPubSubOverWebSocket(t *testing.T) {
	ln, err := listener.Listen(context.Background(), listener.Config{Name: "ws", Type: listener.TypeWS, Address: "127.0.0.1:0", Path: "/ws"}, nil)
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
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	hp := withArgs(brokerFlags(t, ln.Addr().String()), "--ws", "--ws-path", "/ws")
	wait := startSub(t, b, withArgs(hp, "-C", "1", "-v", "-t", "w/#", "-q", "1")...)
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "-t", "w/1", "-m", "over websocket", "-q", "1")...), 0, "")
	expectResult(t, wait(), 0, "w/1 over websocket\n")
	// A wrong path is a clear error, exit 1.
	r := runClientCmd(t, pub, "", withArgs(brokerFlags(t, ln.Addr().String()), "--ws", "--ws-path", "/nope", "-t", "x", "-m", "y")...)
	if r.code != 1 || r.stderr == "" {
		t.Fatalf("wrong path: exit %d stderr %q, want 1 and an error", r.code, r.stderr)
	}
}
