package broker_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// generatedStore is a Store whose Load makes its records as it reports
// them, holding none: sessions s-0..s-(sessions-1), each with perSession
// queued QoS 1 deliveries of 100 B. It reports every delivery through one
// StoredDelivery that it overwrites after each call, as a store may.
type generatedStore struct {
	sessions, perSession int
}

func (g *generatedStore) Load(ctx context.Context, r broker.Restorer) error {
	var d broker.StoredDelivery // reused for every record
	for s := range g.sessions {
		id := fmt.Sprintf("s-%d", s)
		if err := r.RestoreSession(&broker.StoredSession{ClientID: id, Version: packet.V311, ExpiryInterval: broker.NoExpiry}); err != nil {
			return err
		}
		topic := "gen/" + id
		for seq := 1; seq <= g.perSession; seq++ {
			payload := make([]byte, 100)
			copy(payload, fmt.Sprintf("%s/%d", id, seq))
			d = broker.StoredDelivery{Seq: uint64(seq), QoS: 1,
				Msg: broker.StoredMessage{Topic: topic, Payload: payload, QoS: 1}}
			if err := r.RestoreDelivery(id, &d); err != nil {
				return err
			}
			d = broker.StoredDelivery{Msg: broker.StoredMessage{Topic: "overwritten"}}
		}
	}
	return ctx.Err()
}

func (g *generatedStore) Commit(*broker.Batch, bool) error { return nil }
func (g *generatedStore) Close() error                     { return nil }

// TestRestoreStreams: the broker turns each record Load reports into
// session state as it comes, keeping no copy of the records: the record
// a store reuses after each call is not kept (the restored messages are
// intact), and the process's peak RSS during the restore of 200,000
// queued messages stays within 1.5x of what the restored state holds
// after it (a restore that collected the records first and converted them
// afterwards would hold both, about 2x).
func TestRestoreStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("restores 200,000 messages")
	}
	g := &generatedStore{sessions: 4, perSession: 50_000}
	before := snapshot(t)
	resetPeakRSS(t)
	b, addr := mqtttest.StartBroker(t, broker.Options{Store: g})
	peak := procStatus(t, "VmHWM")
	after := snapshot(t)
	queued := 0
	for s := range g.sessions {
		cs, ok := b.ClientStats(fmt.Sprintf("s-%d", s))
		if !ok {
			t.Fatalf("session s-%d not restored", s)
		}
		queued += cs.Queued
	}
	if queued != g.sessions*g.perSession {
		t.Fatalf("restored %d queued messages, want %d", queued, g.sessions*g.perSession)
	}
	grown, peakGrown := float64(after.rss)-float64(before.rss), float64(peak)-float64(before.rss)
	t.Logf("RSS grew %.0f MiB by the restore, peaked %.0f MiB above the start", grown/(1<<20), peakGrown/(1<<20))
	if peakGrown > 1.5*grown {
		t.Errorf("peak RSS %.0f MiB above the start while restoring, %.1fx the %.0f MiB the restored state holds; want at most 1.5x",
			peakGrown/(1<<20), peakGrown/grown, grown/(1<<20))
	}

	c, _ := mqtttest.Connect(t, addr, packet.V311, "s-1", false)
	for seq := 1; seq <= 3; seq++ {
		p := c.ExpectPublish()
		want := fmt.Sprintf("s-1/%d", seq)
		if p.Topic != "gen/s-1" || string(p.Payload[:len(want)]) != want {
			t.Fatalf("message %d after the restore: %q %q, want gen/s-1 %q", seq, p.Topic, p.Payload[:len(want)], want)
		}
		c.Send(&packet.Puback{PacketID: p.PacketID})
	}
}
