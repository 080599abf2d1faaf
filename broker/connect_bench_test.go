package broker_test

import (
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// connectBenchMax bounds the connections BenchmarkConnect holds open (each
// iteration's stays open, as in petrel bench conns): the open-file limit
// is 20,000 and every connection takes two descriptors here.
const connectBenchMax = 8000

// BenchmarkConnect opens idle 3.1.1 connections to a TCP listener, one
// per iteration: dial, CONNECT, CONNACK, and the connection stays open.
// Its allocations per operation are the broker's per connection plus the
// client side's dial (the same in every build), so compare them A/B:
//
//	go test -run '^$' -bench Connect -benchtime 5000x -count 6 ./broker
func BenchmarkConnect(b *testing.B) {
	if b.N > connectBenchMax {
		b.Fatalf("%d connections held open: run with -benchtime Nx, N <= %d", b.N, connectBenchMax)
	}
	_, addr := mqtttest.StartOn(b, broker.Options{}, listener.Config{Name: "tcp", Type: "tcp"})
	frames := make([][]byte, b.N)
	for i := range frames {
		f, err := (&packet.Connect{Version: packet.V311, ClientID: "bench-" + strconv.Itoa(i), CleanStart: true}).Append(nil, packet.V311)
		if err != nil {
			b.Fatal(err)
		}
		frames[i] = f
	}
	conns := make([]net.Conn, 0, b.N)
	defer func() {
		for _, nc := range conns {
			_ = nc.Close() // the benchmark is over
		}
	}()
	var ack [4]byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, nc)
		if _, err := nc.Write(frames[i]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(nc, ack[:]); err != nil {
			b.Fatal(err)
		}
		if ack != [4]byte{0x20, 2, 0, 0} { // CONNACK accepted, no session present
			b.Fatalf("CONNACK % x", ack)
		}
	}
}
