package broker_test

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/diskstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// BenchmarkDurableDrain measures how fast a persistent subscriber that
// comes back online receives a backlog of 50,000 stored messages of 100 B
// at QoS 1 and QoS 2, on a disk store with sync always: the outbound half
// of durable delivery alone (the backlog is written to the store before
// the broker starts, untimed). The subscriber acknowledges as a client
// does, PUBACK, or PUBREC and PUBCOMP, written when it has read what
// arrived. It reports msg/s and the store's fsyncs per 1,000 messages.
//
//	go test ./broker -run '^$' -bench DurableDrain -benchtime 1x -count 5
func BenchmarkDurableDrain(b *testing.B) {
	for _, qos := range []byte{1, 2} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			const n, size = 50_000, 100
			var rates, syncs []float64
			for range b.N {
				b.StopTimer()
				dir := b.TempDir()
				fillBacklog(b, dir, "drain", qos, n, size)
				st, err := diskstore.Open(dir, diskstore.Options{Logger: measureLogger()})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = st.Close() }) // after the broker's shutdown; an error is of no use here
				_, addr := mqtttest.StartBroker(b, broker.Options{Store: st, Logger: measureLogger(), MaxInflight: 1024})
				before := st.Stats().Syncs
				b.StartTimer()
				start := time.Now()
				drainBacklog(b, addr, "drain", n)
				elapsed := time.Since(start)
				b.StopTimer()
				rates = append(rates, n/elapsed.Seconds())
				syncs = append(syncs, float64(st.Stats().Syncs-before)*1000/n)
				b.StartTimer()
			}
			b.ReportMetric(median(rates), "msg/s")
			b.ReportMetric(median(syncs), "fsyncs/1k-msg")
		})
	}
}

// fillBacklog writes a persistent 3.1.1 session id, subscribed to drain/#
// at qos, with n queued messages of size bytes numbered 0..n-1.
func fillBacklog(b *testing.B, dir, id string, qos byte, n, size int) {
	b.Helper()
	st, err := diskstore.Open(dir, diskstore.Options{Sync: diskstore.SyncNone, Logger: measureLogger()})
	if err != nil {
		b.Fatal(err)
	}
	var batch broker.Batch
	batch.Add(broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{Version: packet.V311, ExpiryInterval: broker.NoExpiry}})
	batch.Add(broker.Op{Kind: broker.OpPutSubscription, ClientID: id, Sub: &broker.StoredSubscription{Filter: "drain/#", QoS: qos}})
	for i := range n {
		payload := make([]byte, size)
		copy(payload, strconv.Itoa(i)+" ")
		batch.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: id, Delivery: &broker.StoredDelivery{
			Seq: uint64(i + 1), QoS: qos, Msg: broker.StoredMessage{Topic: "drain/x", Payload: payload, QoS: qos, Origin: "sensor"},
		}})
		if batch.Len() == 5000 {
			if err := st.Commit(&batch, false); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	if err := st.Commit(&batch, false); err != nil {
		b.Fatal(err)
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
}

// drainBacklog resumes session id and reads until n distinct messages
// arrived, acknowledging each, in order and without duplicates.
func drainBacklog(b *testing.B, addr, id string, n int) {
	b.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	r, w := bufio.NewReaderSize(nc, 64<<10), bufio.NewWriterSize(nc, 64<<10)
	buf, _ := (&packet.Connect{ClientID: id, KeepAlive: 60}).Append(nil, packet.V311)
	if _, err := w.Write(buf); err != nil {
		b.Fatal(err)
	}
	next := 0
	for next < n {
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second)) // a stalled drain fails the read
		p, err := packet.ReadPacket(r, packet.V311, 0)
		if err != nil {
			b.Fatalf("after %d messages: %v", next, err)
		}
		var ack packet.Packet
		switch p := p.(type) {
		case *packet.Publish:
			var seq int
			if _, err := fmt.Sscan(string(p.Payload), &seq); err != nil || seq != next {
				b.Fatalf("got message %q, want %d", p.Payload, next)
			}
			next++
			if p.QoS == 1 {
				ack = &packet.Puback{PacketID: p.PacketID}
			} else {
				ack = &packet.Pubrec{PacketID: p.PacketID}
			}
		case *packet.Pubrel:
			ack = &packet.Pubcomp{PacketID: p.PacketID}
		}
		if ack != nil {
			buf, _ = ack.Append(buf[:0], packet.V311)
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}
