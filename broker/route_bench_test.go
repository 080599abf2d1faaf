package broker

import (
	"fmt"
	"testing"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// noWake is a session.Waker that does nothing: the benchmark drains the
// queues itself.
type noWake struct{}

func (noWake) Wake() {}

// BenchmarkRoute measures Broker.publish, from a built message to every
// matching session's queue, for 1 to 1,000 subscribers (plain, with a
// 5.0 subscription identifier, and one share group), draining the queues
// now and then to stay in steady state. allocs/op stays 0 whatever the
// number of subscribers: routing allocates nothing per message per
// subscriber. (The reader allocates per message, not per subscriber: the
// topic and payload, and the session.Message; see packet's
// BenchmarkDecodePublish/reused.)
func BenchmarkRoute(b *testing.B) {
	for _, kind := range []string{"plain", "subid", "shared"} {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/subscribers=%d", kind, n), func(b *testing.B) {
				br, err := New(Options{})
				if err != nil {
					b.Fatal(err)
				}
				sessions := make([]*session.Session, n)
				for i := range sessions {
					s := session.New(fmt.Sprintf("s%d", i), session.Limits{MaxMessages: 1 << 20})
					s.Attach(noWake{}, 1024)
					var sub subscriber
					var key subKey
					switch kind {
					case "plain":
						sub, key = newSubscriber("bench/+/t", "", 1, false, false, 0, nil), subKey{s: s}
					case "subid":
						sub, key = newSubscriber("bench/+/t", "", 1, false, false, uint32(i+1), nil), subKey{s: s}
					case "shared":
						sub, key = newSubscriber("bench/+/t", "g", 1, false, false, 0, nil), subKey{s: s, group: "g"}
					}
					br.subs.Subscribe("bench/+/t", key, sub)
					sessions[i] = s
				}
				msg := &session.Message{Topic: "bench/x/t", Payload: make([]byte, 16), QoS: 0}
				batch := make([]session.Outbound, 0, 256)
				drain := func() {
					for _, s := range sessions {
						for {
							if batch = s.TakeBatch(batch[:0], 256); len(batch) == 0 {
								break
							}
							clear(batch)
						}
					}
				}
				for i := range 2*n + 300 { // warm the pools and every queue's segment
					if _, err := br.publish(msg, nil, false); err != nil {
						b.Fatal(err)
					}
					if i%200 == 199 {
						drain()
					}
				}
				drain()
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if n, err := br.publish(msg, nil, false); err != nil || n == 0 {
						b.Fatal("message not queued", err)
					}
					if i%200 == 199 {
						b.StopTimer()
						drain()
						b.StartTimer()
					}
				}
				b.StopTimer()
				drain()
			})
		}
	}
}
