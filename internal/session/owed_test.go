package session

import (
	"slices"
	"testing"
)

func topicsOf(out []Outbound) []string {
	var ts []string
	for _, o := range out {
		if o.Kind == OutPublish {
			ts = append(ts, o.Delivery.Msg.Topic)
		}
	}
	return ts
}

// TestDropOwed checks that DropOwed removes denied deliveries from the
// queue, the retained backlog and, offline, the inflight window; keeps
// allowed and unknown ones; and reports unknown topics once and the Seqs of
// stored deliveries it removed.
func TestDropOwed(t *testing.T) {
	q := &Quota{}
	s := New("c", Limits{MaxMessages: 100, Quota: q})
	// Two messages go out on a first connection and stay unacknowledged.
	s.Attach(wakeFunc(func() {}), 10)
	s.Enqueue(Delivery{Msg: msg("deny/sent", 1), QoS: 1, Seq: 1})
	s.Enqueue(Delivery{Msg: msg("ok/sent", 1), QoS: 1, Seq: 2})
	if out := s.TakeBatch(nil, 10); len(out) != 2 {
		t.Fatalf("sent %d, want 2", len(out))
	}
	// Online: what was sent stays, whatever the verdict.
	verdict := map[string]bool{"deny/sent": false, "ok/sent": true}
	if n, _, _ := s.DropOwed(verdict); n != 0 {
		t.Fatalf("online: dropped %d sent messages, want 0", n)
	}
	s.Detach()
	s.Enqueue(Delivery{Msg: msg("deny/a", 1), QoS: 1, Seq: 3})
	s.Enqueue(Delivery{Msg: msg("ok/a", 1), QoS: 1, Seq: 4})
	s.Enqueue(Delivery{Msg: msg("new/a", 1), QoS: 1, Seq: 5})
	s.Enqueue(Delivery{Msg: msg("deny/a", 1), QoS: 1})
	s.EnqueueRetained([]Delivery{{Msg: msg("deny/r", 1), QoS: 1}, {Msg: msg("ok/r", 1), QoS: 1}})
	verdict["deny/a"], verdict["ok/a"], verdict["deny/r"], verdict["ok/r"] = false, true, false, true

	n, seqs, unknown := s.DropOwed(verdict)
	if n != 4 {
		t.Fatalf("dropped %d, want 4 (two queued, one retained, one inflight owed again)", n)
	}
	slices.Sort(seqs)
	if !slices.Equal(seqs, []uint64{1, 3}) {
		t.Fatalf("stored seqs dropped %v, want [1 3]", seqs)
	}
	if !slices.Equal(unknown, []string{"new/a"}) {
		t.Fatalf("unknown %v, want [new/a]", unknown)
	}
	if m, _ := q.Queued(); m != 2 {
		t.Fatalf("tenant quota counts %d queued, want 2", m)
	}
	st := s.Stats()
	if st.Queued != 3 || st.Inflight != 1 {
		t.Fatalf("after: %+v, want queued 3 (ok/r, ok/a, new/a), inflight 1 (ok/sent)", st)
	}
	// The unknown topic decided: it goes too.
	verdict["new/a"] = false
	if n, seqs, unknown := s.DropOwed(verdict); n != 1 || !slices.Equal(seqs, []uint64{5}) || unknown != nil {
		t.Fatalf("second pass: %d %v %v, want 1 [5] []", n, seqs, unknown)
	}
	s.Attach(wakeFunc(func() {}), 10)
	got := topicsOf(s.TakeBatch(nil, 10))
	if want := []string{"ok/sent", "ok/r", "ok/a"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want %q", got, want)
	}
}
