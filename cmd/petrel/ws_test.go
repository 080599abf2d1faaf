package main

import (
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

// TestPubSubOverWebSocket runs petrel pub and sub with --ws against a
// broker on a ws listener with a custom path.
func TestPubSubOverWebSocket(t *testing.T) {
	b, addr := mqtttest.StartOn(t, broker.Options{}, listener.Config{Name: "ws", Type: listener.TypeWS, Path: "/ws"})
	hp := withArgs(brokerFlags(t, addr), "--ws", "--ws-path", "/ws")
	wait := startSub(t, b, withArgs(hp, "-C", "1", "-v", "-t", "w/#", "-q", "1")...)
	expectResult(t, runClientCmd(t, pub, "", withArgs(hp, "-t", "w/1", "-m", "over websocket", "-q", "1")...), 0, "")
	expectResult(t, wait(), 0, "w/1 over websocket\n")
	// A wrong path is a clear error, exit 1.
	r := runClientCmd(t, pub, "", withArgs(brokerFlags(t, addr), "--ws", "--ws-path", "/nope", "-t", "x", "-m", "y")...)
	if r.code != 1 || r.stderr == "" {
		t.Fatalf("wrong path: exit %d stderr %q, want 1 and an error", r.code, r.stderr)
	}
}
