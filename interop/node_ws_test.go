package interop_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
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
			_, addr := mqtttest.StartOn(t, broker.Options{}, listener.Config{Name: "ws", Type: listener.TypeWS})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, node, filepath.Join("node", "ws_client.mjs"), "ws://"+addr+"/mqtt", v).CombinedOutput()
			if err != nil {
				t.Fatalf("node client: %v\n%s", err, out)
			}
		})
	}
}
