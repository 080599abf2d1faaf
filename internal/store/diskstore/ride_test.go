package diskstore

import (
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

func retainedBatch(topic string) *broker.Batch {
	return new(broker.Batch).Add(broker.Op{Kind: broker.OpPutRetained, Retained: &broker.StoredMessage{Topic: topic, Payload: []byte("x")}})
}

// TestCommitRidingSharesTheNextSync: while durable writes are synced, a
// riding write returns only with the next sync one of them asks for, and
// costs no sync of its own; with none coming it is synced after
// rideWait; with none asked for recently, at once.
func TestCommitRidingSharesTheNextSync(t *testing.T) {
	s := openT(t, t.TempDir(), Options{rideWait: time.Hour, rideRecent: time.Hour})
	defer closeT(t, s)

	// No durable write yet: nothing would come to share a sync.
	before := s.Stats().Syncs
	if err := s.CommitRiding(retainedBatch("alone")); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Syncs - before; got != 1 {
		t.Fatalf("a riding write with no durable traffic: %d syncs, want 1 (its own)", got)
	}

	if err := s.Commit(retainedBatch("d1"), true); err != nil { // durable traffic from now on
		t.Fatal(err)
	}
	before = s.Stats().Syncs
	done := make(chan error, 1)
	go func() { done <- s.CommitRiding(retainedBatch("rider")) }()
	// It is written at once, then waits: rideWait is an hour here.
	mqtttest.Eventually(t, 10*time.Second, func() bool { return s.Stats().Commits >= 3 }, "the riding write committed")
	select {
	case err := <-done:
		t.Fatalf("the riding write returned (%v) before any sync covered it", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := s.Commit(retainedBatch("d2"), true); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the riding write did not return with the durable write's sync")
	}
	if got := s.Stats().Syncs - before; got != 1 {
		t.Fatalf("a riding write and a durable one: %d syncs, want 1 (shared)", got)
	}
	if got := s.Stats().Groups; got < 4 {
		t.Fatalf("%d commit groups: the riding write was not written on its own", got)
	}

	// Nobody else syncing: the committer syncs for it after rideWait.
	s.opts.rideWait = 20 * time.Millisecond // read by the committer at the next riding write
	before = s.Stats().Syncs
	if err := s.CommitRiding(retainedBatch("late")); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Syncs - before; got != 1 {
		t.Fatalf("a riding write past rideWait: %d syncs, want 1", got)
	}
	closeT(t, s)
	r := openT(t, s.dir, Options{})
	defer closeT(t, r)
	got := map[string]bool{}
	if err := r.Load(t.Context(), retainedCollector(got)); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"alone", "d1", "rider", "d2", "late"} {
		if !got[topic] {
			t.Errorf("%q not stored (got %v)", topic, got)
		}
	}
}

// TestCommitRidingNeedsRecentTraffic: a durable write older than
// rideRecent does not make riding writes wait.
func TestCommitRidingNeedsRecentTraffic(t *testing.T) {
	s := openT(t, t.TempDir(), Options{rideWait: time.Hour, rideRecent: 10 * time.Millisecond})
	defer closeT(t, s)
	if err := s.Commit(retainedBatch("d"), true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	before := s.Stats().Syncs
	done := make(chan error, 1)
	go func() { done <- s.CommitRiding(retainedBatch("r")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a riding write waited with no recent durable traffic")
	}
	if got := s.Stats().Syncs - before; got != 1 {
		t.Fatalf("%d syncs, want 1", got)
	}
}

// retainedCollector records the topics of the retained messages Load
// reports.
type retainedCollector map[string]bool

func (c retainedCollector) RestoreSession(*broker.StoredSession) error                   { return nil }
func (c retainedCollector) RestoreSubscription(string, *broker.StoredSubscription) error { return nil }
func (c retainedCollector) RestoreDelivery(string, *broker.StoredDelivery) error         { return nil }
func (c retainedCollector) RestoreInbound(string, uint16, uint64) error                  { return nil }
func (c retainedCollector) RestoreRetained(m *broker.StoredMessage) error {
	c[m.Topic] = true
	return nil
}
