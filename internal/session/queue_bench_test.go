package session

import (
	"fmt"
	"testing"
)

// BenchmarkQueue measures the delivery cycle of one session: Enqueue a
// batch, TakeBatch it (packet ids and inflight window for QoS > 0), then
// acknowledge it. Allocations are per message once the queue and the
// inflight window have warmed up.
func BenchmarkQueue(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("qos%d/batch%d", qos, batch), func(b *testing.B) {
				s := New("bench", Limits{MaxMessages: 50_000})
				s.Attach(wakeFunc(func() {}), 1024)
				msg := &Message{Topic: "sensors/building-1/floor-2/temperature", Payload: make([]byte, 64), QoS: qos}
				d := Delivery{Msg: msg, QoS: qos}
				out := make([]Outbound, 0, batch)
				cycle := func() {
					for range batch {
						if !s.Enqueue(d).Accepted {
							b.Fatal("enqueue refused")
						}
					}
					out = s.TakeBatch(out[:0], batch)
					if len(out) != batch {
						b.Fatalf("took %d, want %d", len(out), batch)
					}
					if qos > 0 {
						for i := range out {
							if _, ok := s.Puback(out[i].PacketID); !ok {
								b.Fatalf("puback %d refused", out[i].PacketID)
							}
						}
					}
				}
				for range 100 {
					cycle() // warm the queue ring and the inflight map
				}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					cycle()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
			})
		}
	}
}

// BenchmarkQueueParallelEnqueue measures Enqueue from several publisher
// goroutines into one session while nothing drains it (bounded by the
// queue's limit, so most calls take the refusal path once full).
func BenchmarkQueueParallelEnqueue(b *testing.B) {
	s := New("bench", Limits{MaxMessages: 1 << 20})
	s.Attach(wakeFunc(func() {}), 1024)
	d := Delivery{Msg: &Message{Topic: "t", Payload: make([]byte, 16)}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Enqueue(d)
		}
	})
}

// BenchmarkNewMessage: the broker's one allocation per inbound PUBLISH,
// the message with its topic and payload.
func BenchmarkNewMessage(b *testing.B) {
	topic := "petrel-bench/0001/pair/17"
	for _, size := range []int{16, 256, 1024} {
		payload := make([]byte, size)
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = NewMessage(topic, payload)
			}
		})
	}
}
