package interop_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
)

// TestNodeMQTTOverWebSocket drives Petrel over WebSocket with the `mqtt`
// npm package (the library browser pages use), for MQTT 3.1, 3.1.1 and
// 5.0: QoS 0/1/2 in order and a retained message. test.sh installs the
// package (npm ci in interop/node).
func TestNodeMQTTOverWebSocket(t *testing.T) {
	node, err := exec.LookPath("node")
	modules := filepath.Join("node", "node_modules", "mqtt")
	if _, statErr := os.Stat(modules); err != nil || statErr != nil {
		msg := "node or interop/node/node_modules missing: install Node.js and run npm ci --prefix interop/node (test.sh does)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	for _, v := range []string{"3", "4", "5"} {
		t.Run("protocol level "+v, func(t *testing.T) {
			addr := startWSBroker(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, node, filepath.Join("node", "ws_client.mjs"), "ws://"+addr+"/mqtt", v).CombinedOutput()
			if err != nil {
				t.Fatalf("node client: %v\n%s", err, out)
			}
		})
	}
}

// startWSBroker serves a broker on a ws listener at 127.0.0.1:0.
func startWSBroker(t *testing.T) string {
	t.Helper()
	ln, err := listener.Listen(context.Background(), listener.Config{Name: "ws", Type: listener.TypeWS, Address: "127.0.0.1:0"}, nil)
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
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		_ = ln.Close() // Shutdown closed it already
	})
	return ln.Addr().String()
}
