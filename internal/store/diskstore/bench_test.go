package diskstore

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// BenchmarkCommitDurable measures durable QoS 1 enqueues from 8 ×
// GOMAXPROCS concurrent publishers, each to its own session: the group
// commit path with fsync ("always"). msgs/s is the PUBACK rate.
func BenchmarkCommitDurable(b *testing.B) {
	for _, mode := range []string{SyncAlways, SyncNone} {
		b.Run(mode, func(b *testing.B) {
			s := openT(b, b.TempDir(), Options{Sync: mode})
			defer closeT(b, s)
			payload := make([]byte, 256)
			var next atomic.Int64
			b.SetParallelism(8)
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				id := fmt.Sprintf("bench-%d", next.Add(1))
				var batch broker.Batch
				batch.Add(broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{Version: packet.V5}})
				if err := s.Commit(&batch, true); err != nil {
					b.Error(err)
					return
				}
				d := broker.StoredDelivery{QoS: 1, Msg: broker.StoredMessage{Topic: "bench/" + id, Payload: payload, QoS: 1}}
				for seq := uint64(1); pb.Next(); seq++ {
					batch.Reset()
					d.Seq = seq
					batch.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: id, Delivery: &d})
					if err := s.Commit(&batch, true); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			st := s.Stats()
			b.ReportMetric(float64(st.Commits)/float64(max(st.Groups, 1)), "commits/group")
			b.ReportMetric(float64(st.Syncs)/time.Since(start).Seconds(), "fsyncs/s")
		})
	}
}

// BenchmarkLoad1M measures a restart with 1M queued messages (1,000
// sessions × 1,000 messages of 200 B): Open plus Load, the broker's
// start-up. It writes the data set first (not timed), so it runs with
// b.N = 1: go test -run '^$' -bench Load1M -benchtime 1x.
func BenchmarkLoad1M(b *testing.B) {
	const sessions, perSession = 1000, 1000
	dir := b.TempDir()
	s := openT(b, dir, Options{Sync: SyncNone})
	payload := make([]byte, 200)
	var batch broker.Batch
	for c := range sessions {
		batch.Reset()
		id := fmt.Sprintf("client-%04d", c)
		batch.Add(broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{Version: packet.V5, ExpiryInterval: broker.NoExpiry}})
		batch.Add(broker.Op{Kind: broker.OpPutSubscription, ClientID: id, Sub: &broker.StoredSubscription{Filter: "devices/" + id + "/#", QoS: 1}})
		for seq := range perSession {
			batch.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: id, Delivery: &broker.StoredDelivery{
				Seq: uint64(seq + 1), QoS: 1,
				Msg: broker.StoredMessage{Topic: "devices/" + id + "/telemetry", Payload: payload, QoS: 1, Origin: "sensor"},
			}})
		}
		if err := s.Commit(&batch, false); err != nil {
			b.Fatal(err)
		}
	}
	closeT(b, s)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		s := openT(b, dir, Options{})
		opened := time.Since(start)
		st, err := broker.LoadAll(context.Background(), s)
		if err != nil {
			b.Fatal(err)
		}
		total := time.Since(start)
		b.StopTimer()
		n := 0
		for _, sess := range st.Sessions {
			n += len(sess.Queue)
		}
		if n != sessions*perSession {
			b.Fatalf("loaded %d messages, want %d", n, sessions*perSession)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(opened.Seconds(), "open-s")
		b.ReportMetric(total.Seconds(), "open+load-s")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
		runtime.KeepAlive(st)
		closeT(b, s)
		b.StartTimer()
	}
}
