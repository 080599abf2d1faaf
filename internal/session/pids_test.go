package session

import (
	"fmt"
	"testing"
)

// stored returns a persistent session, online with window inflight.
func stored(t *testing.T, inflight int) *Session {
	t.Helper()
	s := New("c1", Limits{})
	s.SetPersistent(true)
	s.Attach(wakeFunc(func() {}), inflight)
	return s
}

// storedDelivery is a stored delivery (Seq != 0) of QoS qos.
func storedDelivery(seq uint64, qos byte) Delivery {
	return Delivery{Msg: msg(fmt.Sprintf("s%d", seq), qos), QoS: qos, Seq: seq}
}

// ids returns the packet ids of out, 0 for a QoS 0 publish.
func ids(out []Outbound) []uint16 {
	r := make([]uint16, len(out))
	for i, o := range out {
		r[i] = o.PacketID
	}
	return r
}

func TestPacketIDFor(t *testing.T) {
	for _, tc := range []struct {
		seq  uint64
		want uint16
	}{{1, 1}, {2, 2}, {storedIDs, storedIDs}, {storedIDs + 1, 1}, {2*storedIDs + 5, 5}} {
		if got := PacketIDFor(tc.seq); got != tc.want {
			t.Errorf("PacketIDFor(%d) = %d, want %d", tc.seq, got, tc.want)
		}
	}
}

// TestStoredQoS2IDsAreDerivedAndOthersAvoidThem: a stored QoS 2 delivery is
// sent under the id its Seq gives, in whatever order the session saw
// others; every other QoS 1/2 delivery of a persistent session takes an
// id above the derived ones [MQTT-2.3.1-2].
func TestStoredQoS2IDsAreDerivedAndOthersAvoidThem(t *testing.T) {
	s := stored(t, 100)
	s.Enqueue(storedDelivery(7, 2))
	s.Enqueue(storedDelivery(8, 1))                          // stored QoS 1
	s.Enqueue(Delivery{Msg: msg("clean", 2), QoS: 2})        // not stored
	s.Enqueue(storedDelivery(storedIDs+3, 2))                // wraps to 3
	s.Enqueue(Delivery{Msg: msg("zero", 0), QoS: 0, Seq: 0}) // no id
	out := s.TakeBatch(nil, 10)
	got := ids(out)
	if len(got) != 5 || got[0] != 7 || got[3] != 3 || got[4] != 0 {
		t.Fatalf("ids %v, want 7, two above %d, 3, 0", got, storedIDs)
	}
	for _, i := range []int{1, 2} {
		if got[i] <= storedIDs {
			t.Fatalf("ids %v: item %d took %d, one of the derived ids", got, i, got[i])
		}
	}
}

// TestStoredQoS2WaitsForItsIDAndItsCooling: a stored QoS 2 delivery whose
// id is held waits first in the queue, and nothing behind it overtakes it
// [MQTT-4.6.0-6]; an id freed by PUBCOMP stays held until Cooled says the
// removal is durable; WaitsForCooling says so only while the head waits
// for a cooling id, not for one in flight.
func TestStoredQoS2WaitsForItsIDAndItsCooling(t *testing.T) {
	s := stored(t, 100)
	s.Enqueue(storedDelivery(1, 2))
	if out := s.TakeBatch(nil, 10); len(out) != 1 || out[0].PacketID != 1 {
		t.Fatalf("first: %+v", out)
	}
	s.Enqueue(storedDelivery(storedIDs+1, 2)) // id 1 again
	s.Enqueue(storedDelivery(storedIDs+2, 2)) // id 2, free, but behind
	assertWaits := func(when string) {
		t.Helper()
		if s.HasPending() {
			t.Fatalf("%s: HasPending, want the writer to wait for id 1", when)
		}
		if out := s.TakeBatch(nil, 10); len(out) != 0 {
			t.Fatalf("%s: took %v, want nothing while id 1 is held", when, ids(out))
		}
	}
	assertWaits("in flight")
	if s.WaitsForCooling() {
		t.Fatal("WaitsForCooling while id 1 is in flight")
	}
	if _, _, ok := s.Pubrec(1); !ok {
		t.Fatal("PUBREC 1 refused")
	}
	assertWaits("awaiting PUBCOMP")
	if seq, ok := s.Pubcomp(1); !ok || seq != 1 {
		t.Fatalf("PUBCOMP 1: seq %d ok %v", seq, ok)
	}
	assertWaits("cooling")
	if !s.WaitsForCooling() {
		t.Fatal("WaitsForCooling false while the head waits for cooling id 1")
	}
	if c := s.Cooling(); len(c) != 1 || c[0] != (CoolingID{PacketID: 1, Seq: 1}) {
		t.Fatalf("Cooling %+v, want id 1 of seq 1", c)
	}
	if s.Cooled(1, 99) {
		t.Fatal("Cooled for another Seq freed the id")
	}
	assertWaits("cooled for another seq")
	if !s.Cooled(1, 1) {
		t.Fatal("Cooled(1, 1) = false, want true")
	}
	if !s.HasPending() || s.WaitsForCooling() {
		t.Fatalf("HasPending %v WaitsForCooling %v once id 1 is free, want true, false", s.HasPending(), s.WaitsForCooling())
	}
	if got := ids(s.TakeBatch(nil, 10)); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("ids %v, want [1 2]", got)
	}
}

// TestPersistentWindowLeavesIDsForOthers: a persistent session's window is
// at most storedIDs, so the ids above them never run out.
func TestPersistentWindowLeavesIDsForOthers(t *testing.T) {
	s := stored(t, 65535)
	for range storedIDs + 10 {
		s.Enqueue(Delivery{Msg: msg("q1", 1), QoS: 1})
	}
	out := s.TakeBatch(nil, 65535)
	if len(out) != storedIDs {
		t.Fatalf("took %d, want the window of %d", len(out), storedIDs)
	}
	for _, o := range out {
		if o.PacketID <= storedIDs {
			t.Fatalf("QoS 1 delivery under derived id %d", o.PacketID)
		}
	}
}

// TestRestoreQueuedQoS2AsMaybeSent: a queued stored QoS 2 delivery may
// have been sent under its derived id before a crash (nothing is written
// before sending), so the first window of them come back in flight and
// are sent again with DUP [MQTT-3.3.1-1] under that id; the rest, and all
// after one that went to the queue, follow from the queue in order.
func TestRestoreQueuedQoS2AsMaybeSent(t *testing.T) {
	s := New("c1", Limits{})
	s.SetPersistent(true)
	for seq := uint64(1); seq <= 5; seq++ {
		if stale := s.Restore(storedDelivery(seq, 2), 0, RestoreQueued, 3); stale != 0 {
			t.Fatalf("seq %d: stale %d", seq, stale)
		}
	}
	s.Restore(storedDelivery(6, 1), 0, RestoreQueued, 100) // QoS 1: queued
	s.Restore(storedDelivery(7, 2), 0, RestoreQueued, 100) // behind it: queued
	s.Attach(wakeFunc(func() {}), 100)
	out := s.TakeBatch(nil, 10)
	if len(out) != 7 {
		t.Fatalf("took %d, want 7", len(out))
	}
	for i, o := range out {
		seq := uint64(i + 1)
		if o.Delivery.Seq != seq {
			t.Fatalf("item %d is seq %d, want %d (order kept)", i, o.Delivery.Seq, seq)
		}
		if wantDup := seq <= 3; o.Dup != wantDup {
			t.Fatalf("seq %d: DUP %v, want %v", seq, o.Dup, wantDup)
		}
		if o.Delivery.QoS == 2 && o.PacketID != PacketIDFor(seq) {
			t.Fatalf("seq %d under id %d, want %d", seq, o.PacketID, PacketIDFor(seq))
		}
	}
}

// TestRestoreDropsAnEarlierRecordUnderTheSameID: an id is given again only
// once its delivery ended, so of two records under one id the earlier is
// stale (its removal was lost): Restore reports it and keeps the later.
func TestRestoreDropsAnEarlierRecordUnderTheSameID(t *testing.T) {
	s := New("c1", Limits{})
	s.SetPersistent(true)
	if stale := s.Restore(storedDelivery(1, 2), 7, RestoreAwaitPubcomp, 100); stale != 0 {
		t.Fatalf("first record: stale %d", stale)
	}
	s.Restore(storedDelivery(2, 2), 9, RestoreAwaitPubcomp, 100)
	if stale := s.Restore(storedDelivery(5, 2), 7, RestoreAwaitPubrec, 100); stale != 1 {
		t.Fatalf("stale %d, want seq 1", stale)
	}
	s.Attach(wakeFunc(func() {}), 100)
	out := s.TakeBatch(nil, 10)
	if len(out) != 2 || out[0].Kind != OutPubrel || out[0].PacketID != 9 ||
		out[1].Kind != OutPublish || !out[1].Dup || out[1].PacketID != 7 || out[1].Delivery.Seq != 5 {
		t.Fatalf("resent %+v, want PUBREL 9 then PUBLISH seq 5 under 7 with DUP", out)
	}
}

// TestRestoreNeverDropsAMaybeSentDelivery: a record under the derived id
// of an earlier queued delivery (which the broker would not make) never
// makes that delivery stale: it goes back to the queue, behind, not lost.
func TestRestoreNeverDropsAMaybeSentDelivery(t *testing.T) {
	s := New("c1", Limits{})
	s.SetPersistent(true)
	s.Restore(storedDelivery(3, 2), 0, RestoreQueued, 100) // in flight as maybe sent, id 3
	if stale := s.Restore(storedDelivery(storedIDs+3, 2), 3, RestoreAwaitPubcomp, 100); stale != 0 {
		t.Fatalf("stale %d, want none: seq 3 may never have been sent", stale)
	}
	s.Attach(wakeFunc(func() {}), 100)
	out := s.TakeBatch(nil, 10)
	if len(out) != 1 || out[0].Kind != OutPubrel || out[0].PacketID != 3 {
		t.Fatalf("took %+v, want PUBREL 3 first", out)
	}
	if _, ok := s.Pubcomp(3); !ok {
		t.Fatal("PUBCOMP 3 refused")
	}
	s.Cooled(3, storedIDs+3)
	out = s.TakeBatch(nil, 10)
	if len(out) != 1 || out[0].Delivery.Seq != 3 || out[0].PacketID != 3 {
		t.Fatalf("took %+v, want seq 3 from the queue under id 3", out)
	}
}
