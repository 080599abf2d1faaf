package broker_test

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// BenchmarkPubSub sends QoS 0 messages from one client to one subscriber
// through the broker over loopback TCP: the reader, routing, the inline
// write and the writer goroutine, on raw descriptors (RawTransport). rtt
// publishes one message and waits for it at the subscriber (a quiet
// client: inline writes, parking between messages once the grace passes,
// which it does not at this rate); burst publishes 64 before reading them
// (the writer goroutine and full sockets). The CPU it measures is the
// broker's and the two clients' on the same cores: compare A/B only.
//
//	go test -run '^$' -bench PubSub -count 6 ./broker
func BenchmarkPubSub(b *testing.B) {
	for _, tc := range []struct {
		name  string
		burst int
	}{{"rtt", 1}, {"burst", 64}} {
		b.Run(tc.name, func(b *testing.B) {
			_, addr := mqtttest.StartBroker(b, broker.Options{})
			sub, _ := mqtttest.Connect(b, addr, packet.V311, "bench-sub", true)
			sub.Subscribe(1, packet.Subscription{Filter: "bench/t"})
			pub, _ := mqtttest.Connect(b, addr, packet.V311, "bench-pub", true)
			frame, err := (&packet.Publish{Topic: "bench/t", Payload: make([]byte, 64)}).Append(nil, packet.V311)
			if err != nil {
				b.Fatal(err)
			}
			out := bytes.Repeat(frame, tc.burst)
			in := make([]byte, len(out))
			r := bufio.NewReaderSize(sub.Conn, 64<<10)
			b.SetBytes(int64(len(out)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := pub.Conn.Write(out); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, in); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if !bytes.Equal(in, out) {
				b.Fatal("the subscriber got other bytes than were published")
			}
		})
	}
}
