package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// BenchmarkJournalAdopt10k measures adopting, on another node, a session
// with 10,000 queued QoS 1 deliveries (100-byte payloads) whose messages
// are in the message log: the journal's fold and the batched fetch from
// the log. One adoption per iteration (the session is claimed anew).
//
//	go test -run '^$' -bench BenchmarkJournalAdopt10k -benchtime 3x ./internal/cluster/
func BenchmarkJournalAdopt10k(b *testing.B) {
	const queued = 10000
	ms := startAll(b, configs(b, 3, 3))
	waitReady(b, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := ms[0].js.Stream(ctx, logStream); err != nil { // the nodes made it
		b.Fatal(err)
	}
	n1 := ms[0]
	j1 := n1.Journal(memstore.New())
	key := "bench"
	if err := n1.Claim(ctx, key); err != nil {
		b.Fatal(err)
	}
	if _, err := j1.LoadSession(ctx, key, &sessionOrder{key: key}); err != nil {
		b.Fatal(err)
	}
	if err := j1.Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{Version: packet.V311}}}}, true); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 100)
	subj, _ := TopicSubject("bench/t")
	var futs []jetstream.PubAckFuture
	for i := range queued {
		m := msgQoS("bench/t", i)
		m.Payload = payload
		f, err := n1.js.PublishAsync(logRoot+"."+subj, appendEnvelope(nil, m, "n1", 1, time.Now()))
		if err != nil {
			b.Fatal(err)
		}
		futs = append(futs, f)
	}
	var batch broker.Batch
	for i, f := range futs {
		select {
		case ack := <-f.Ok():
			batch.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: key, Delivery: &broker.StoredDelivery{Seq: ack.Sequence, QoS: 1}})
		case err := <-f.Err():
			b.Fatal(err)
		}
		if batch.Len() == 100 || i == len(futs)-1 {
			if err := j1.Commit(&batch, true); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	j2 := ms[1].Journal(memstore.New())
	b.ResetTimer()
	for range b.N {
		if err := ms[1].Claim(ctx, key); err != nil {
			b.Fatal(err)
		}
		o := &sessionOrder{key: key}
		found, err := j2.LoadSession(ctx, key, o)
		if err != nil || !found || len(o.s.Queue) != queued {
			b.Fatalf("adopted %v, %v", found, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(queued), "deliveries/op")
}

// BenchmarkJournalCommit measures one session's commits of one enqueue
// each (three nodes in one process, replicas 3): durable (each waits
// for the quorum's acknowledgement) and not.
//
//	go test -run '^$' -bench BenchmarkJournalCommit -benchtime 2000x ./internal/cluster/
func BenchmarkJournalCommit(b *testing.B) {
	ms := startAll(b, configs(b, 3, 3))
	waitReady(b, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	j := ms[0].Journal(memstore.New())
	defer j.Close()
	for _, durable := range []bool{true, false} {
		key := "commit-" + map[bool]string{true: "durable", false: "async"}[durable]
		if err := ms[0].Claim(ctx, key); err != nil {
			b.Fatal(err)
		}
		if _, err := j.LoadSession(ctx, key, &sessionOrder{key: key}); err != nil {
			b.Fatal(err)
		}
		if err := j.Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{Version: packet.V311}}}}, true); err != nil {
			b.Fatal(err)
		}
		b.Run(key, func(b *testing.B) {
			var batch broker.Batch
			for i := range b.N {
				batch.Reset()
				batch.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: key, Delivery: &broker.StoredDelivery{Seq: uint64(i + 1), QoS: 1}})
				if err := j.Commit(&batch, durable); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
