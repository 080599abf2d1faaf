package cluster

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// TestStartRouteAddressInUse: a node whose route address is taken fails
// to start at once, with the bind error (not after its context's
// minute), and leaves nothing running.
func TestStartRouteAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := configs(t, 2, 1)[0]
	c.Listen = l.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		n, err := Start(ctx, c)
		if n != nil {
			n.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "router port") {
			t.Fatalf("Start on a taken route address: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Start did not return at once")
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Name: "c", Node: "n1", Listen: "127.0.0.1:6222", Peers: []string{"127.0.0.1:6223", "nats-route://h:6224"}, Replicas: 3, DataDir: "/tmp/x"}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	tests := map[string]func(*Config){
		"no name":             func(c *Config) { c.Name = "" },
		"no node":             func(c *Config) { c.Node = "" },
		"node with dot":       func(c *Config) { c.Node = "n.1" },
		"bad listen":          func(c *Config) { c.Listen = "localhost" },
		"listen port 0":       func(c *Config) { c.Listen = "127.0.0.1:0" },
		"bad peer":            func(c *Config) { c.Peers = []string{"http://h:1"} },
		"peer no port":        func(c *Config) { c.Peers = []string{"h"} },
		"replicas 0":          func(c *Config) { c.Replicas = 0 },
		"no data dir":         func(c *Config) { c.DataDir = "" },
		"tls no cert":         func(c *Config) { c.TLS = &tls.Config{} },
		"long node name":      func(c *Config) { c.Node = string(make([]byte, 65)) },
		"negative inbox":      func(c *Config) { c.InboxBytes = -1 },
		"negative ttl":        func(c *Config) { c.TombstoneTTL = -time.Second },
		"negative will after": func(c *Config) { c.WillAfter = -time.Second },
		"negative retention":  func(c *Config) { c.MessageRetention = -time.Hour },
	}
	for name, mod := range tests {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
	// Replicas are capped by the configured nodes; a peer equal to the
	// listen address is this node.
	c := good
	c.Replicas = 5
	c.Peers = []string{"127.0.0.1:6222", "127.0.0.1:6223"}
	if r := c.replicas(); r != 2 {
		t.Fatalf("replicas %d, want 2 (two configured nodes)", r)
	}
	// Zero bounds take their defaults.
	if b, ttl := good.inboxBytes(), good.tombstoneTTL(); b != DefaultInboxBytes || ttl != DefaultTombstoneTTL {
		t.Fatalf("defaults: inbox %d bytes, tombstone TTL %s", b, ttl)
	}
	// The message log: 7 days and 10 GiB by default; a negative byte
	// bound is none (JetStream's -1).
	if r, b := good.messageRetention(), good.messageBytes(); r != 168*time.Hour || b != 10<<30 {
		t.Fatalf("log defaults: retention %s, %d bytes", r, b)
	}
	c = good
	c.MessageRetention, c.MessageBytes = time.Hour, -1
	if r, b := c.messageRetention(), c.messageBytes(); r != time.Hour || b != -1 {
		t.Fatalf("log bounds: retention %s, %d bytes; want 1h, -1 (none)", r, b)
	}
	c.MessageBytes = 1 << 20
	if b := c.messageBytes(); b != 1<<20 {
		t.Fatalf("log bytes %d, want 1 MiB", b)
	}
	if d := good.willAfter(); d != DefaultWillAfter {
		t.Fatalf("default will_after %s", d)
	}
}
