package broker

import (
	"testing"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// BenchmarkAppendOutbound measures the writer's encoding of one QoS 0
// PUBLISH (16-byte payload) into the batch buffer, counters included:
// serial, and with every goroutine on a connection of its own, as
// writers of different clients run.
func BenchmarkAppendOutbound(b *testing.B) {
	br, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	msg := session.NewMessage("bench/x/t", make([]byte, 16))
	b.Run("serial", func(b *testing.B) {
		c := newConn(br, nil)
		o := session.Outbound{Delivery: session.Delivery{Msg: msg}}
		buf := make([]byte, 0, 1<<10)
		var lim outLimits
		for b.Loop() {
			buf, _, _ = c.appendOutbound(buf[:0], &o, packet.V311, nil, &lim)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			c := newConn(br, nil)
			o := session.Outbound{Delivery: session.Delivery{Msg: msg}}
			buf := make([]byte, 0, 1<<10)
			var lim outLimits
			for pb.Next() {
				buf, _, _ = c.appendOutbound(buf[:0], &o, packet.V311, nil, &lim)
			}
		})
	})
}
