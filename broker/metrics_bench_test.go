package broker

import (
	"testing"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// BenchmarkCountReceived measures what the reader adds per accepted
// PUBLISH for the metrics: the counters by QoS, the connection's count
// and, one message in 64, the receipt time.
func BenchmarkCountReceived(b *testing.B) {
	br, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	c := newConn(br, nil)
	msg := session.NewMessage("bench/x/t", make([]byte, 16))
	for b.Loop() {
		c.countReceived(msg, 0)
	}
}

// BenchmarkAppendOutboundSampled is BenchmarkAppendOutbound/serial with
// every message carrying a receipt time: the cost of one latency
// observation (one message in 64 pays it).
func BenchmarkAppendOutboundSampled(b *testing.B) {
	br, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	msg := session.NewMessage("bench/x/t", make([]byte, 16))
	msg.SetStamp(br.metrics.micros())
	c := newConn(br, nil)
	o := session.Outbound{Delivery: session.Delivery{Msg: msg}}
	buf := make([]byte, 0, 1<<10)
	var lim outLimits
	for b.Loop() {
		buf, _, _ = c.appendOutbound(buf[:0], &o, packet.V311, nil, &lim)
	}
}
