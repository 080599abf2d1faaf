package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/bench"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

func TestBenchJSON(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	_, port, _ := net.SplitHostPort(addr) // addr comes from net.Listen
	var out, errOut bytes.Buffer
	code := benchCmd(context.Background(), []string{"fanin", "--port", port, "--qos", "1", "--clients", "2",
		"--rate", "2000", "--duration", "200ms", "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var r bench.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Scenario != "fanin" || r.Received == 0 || r.Lost != 0 || r.Latency.P99 == 0 {
		t.Errorf("report %+v", r)
	}
}

func TestBenchText(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	_, port, _ := net.SplitHostPort(addr) // addr comes from net.Listen
	var out, errOut bytes.Buffer
	if code := benchCmd(context.Background(), []string{"conns", "--port", port, "--clients", "20"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "connections      20 in") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"fanin", "--host", "10.0.0.1"},
		{"fanin", "--version", "4.0"},
		{"fanin", "--qos", "3"},
		{"bogus"},
		{"fanin", "extra"},
	} {
		var out, errOut bytes.Buffer
		if code := benchCmd(context.Background(), args, &out, &errOut); code != exitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", args, code, exitUsage, errOut.String())
		}
	}
}
