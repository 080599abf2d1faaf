package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestJournalAdoptAfterWriterDies: every kind of session operation
// committed durably on n1 is reported, exactly and in Store.Load's order,
// by LoadSession on n2 after n1 is gone; each delivery with its message
// from the message log (an AwaitPubcomp one with none); a tenant's key
// and a bare client id are two sessions; what was deleted is not there.
func TestJournalAdoptAfterWriterDies(t *testing.T) {
	ms, js := journalCluster(t)
	n1, n2 := ms[0], ms[1]
	j1, j2 := js[0], js[1]
	key := broker.SessionKey("acme", "meter-1")
	other := "meter-1" // tenant "", same client id
	claim(t, n1, key)
	if a := load(t, j1, key); a.found {
		t.Fatal("a new session found")
	}

	disc := time.Unix(1_700_000_000, 123).UTC()
	willProps := &packet.Properties{ContentType: "text/plain", UserProperties: []packet.UserProperty{{Key: "k", Value: "v"}}}
	willProps.Set(packet.PropContentType)
	rec := &broker.StoredSession{ClientID: key, Version: packet.V5, ExpiryInterval: 3600, DisconnectedAt: disc,
		Will:      &broker.StoredMessage{Topic: "acme/will", Payload: []byte("gone"), QoS: 1, Retain: true, Properties: willProps, Origin: key},
		WillDelay: 30,
		Holder:    &broker.StoredHolder{Tenant: "acme", Username: "u", Roles: []string{"r1", "r2"}, Method: "password", Principal: "u", Attrs: map[string]string{"a": "b"}}}
	subA := broker.StoredSubscription{Filter: "acme/a/#", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, SubID: 7}
	subB := broker.StoredSubscription{Filter: "$share/g/acme/b", QoS: 2}
	subC := broker.StoredSubscription{Filter: "acme/c", QoS: 0}

	props := &packet.Properties{ResponseTopic: "acme/reply", CorrelationData: []byte{1, 2}}
	props.Set(packet.PropResponseTopic)
	props.Set(packet.PropCorrelationData)
	m1 := session.NewMessage("acme/a/1", []byte("one"))
	m1.QoS, m1.Origin, m1.Properties = 1, "acme\x00pub", props
	m2 := session.NewMessage("acme/b", []byte("two"))
	m2.QoS = 2
	m3 := session.NewMessage("acme/a/3", []byte("three"))
	m3.QoS = 1
	m4 := session.NewMessage("acme/a/4", []byte("four"))
	m4.QoS = 2
	s1, s2, s3, s4 := logPublish(t, n1, m1), logPublish(t, n1, m2), logPublish(t, n1, m3), logPublish(t, n1, m4)

	commit(t, j1, broker.Op{Kind: broker.OpPutSession, ClientID: key, Session: rec},
		broker.Op{Kind: broker.OpPutSubscription, ClientID: key, Sub: &subA},
		broker.Op{Kind: broker.OpPutSubscription, ClientID: key, Sub: &subB},
		broker.Op{Kind: broker.OpPutSubscription, ClientID: key, Sub: &subC})
	commit(t, j1, broker.Op{Kind: broker.OpDeleteSubscription, ClientID: key, Filter: subC.Filter},
		broker.Op{Kind: broker.OpEnqueue, ClientID: key, Delivery: &broker.StoredDelivery{Seq: s1, QoS: 1, SubIDs: []uint32{7}}},
		broker.Op{Kind: broker.OpEnqueue, ClientID: key, Delivery: &broker.StoredDelivery{Seq: s2, QoS: 2, Share: "acme\x00g", ShareFilter: "acme/b"}},
		broker.Op{Kind: broker.OpEnqueue, ClientID: key, Delivery: &broker.StoredDelivery{Seq: s3, QoS: 1}},
		broker.Op{Kind: broker.OpEnqueue, ClientID: key, Delivery: &broker.StoredDelivery{Seq: s4, QoS: 2, Retain: true}})
	commit(t, j1, broker.Op{Kind: broker.OpSetInflight, ClientID: key, Delivery: &broker.StoredDelivery{Seq: s1, PacketID: 11, State: broker.AwaitPuback}},
		broker.Op{Kind: broker.OpSetInflight, ClientID: key, Delivery: &broker.StoredDelivery{Seq: s2, PacketID: 12, State: broker.AwaitPubcomp}},
		broker.Op{Kind: broker.OpDequeue, ClientID: key, Seq: s3},
		broker.Op{Kind: broker.OpPutInbound, ClientID: key, PacketID: 9, Seq: 0xfeedface}, // with its log write id
		broker.Op{Kind: broker.OpPutInbound, ClientID: key, PacketID: 5},
		broker.Op{Kind: broker.OpPutInbound, ClientID: key, PacketID: 300},
		broker.Op{Kind: broker.OpDeleteInbound, ClientID: key, PacketID: 300},
		// Naming no session: ignored (the Store contract).
		broker.Op{Kind: broker.OpPutSubscription, ClientID: "nobody", Sub: &subA},
		// Another tenant's session of the same client id.
		broker.Op{Kind: broker.OpPutSession, ClientID: other, Session: &broker.StoredSession{Version: packet.V311, ExpiryInterval: broker.NoExpiry}})
	// A batch with an operation lacking its record is refused whole:
	// nothing of it is written, for any session (the Store contract).
	ghost := broker.StoredSubscription{Filter: "acme/ghost"}
	for i, bad := range [][]broker.Op{
		{{Kind: broker.OpPutSubscription, ClientID: key, Sub: &ghost}, {Kind: broker.OpEnqueue, ClientID: other}},
		{{Kind: broker.OpPutSubscription, ClientID: key, Sub: &ghost}, {Kind: broker.OpPutSession, ClientID: "new"}},
		{{Kind: broker.OpPutSubscription, ClientID: key, Sub: &ghost}, {Kind: 200}},
		{{Kind: broker.OpPutSubscription, ClientID: key, Sub: &ghost}, {Kind: broker.OpPutRetained}},
		// A will the packet codec refuses to encode (QoS 3).
		{{Kind: broker.OpPutSubscription, ClientID: key, Sub: &ghost}, {Kind: broker.OpPutSession, ClientID: "new",
			Session: &broker.StoredSession{Version: packet.V5, Will: &broker.StoredMessage{Topic: "w", QoS: 3}}}},
	} {
		if err := j1.Commit(&broker.Batch{Ops: bad}, true); err == nil {
			t.Fatalf("invalid batch %d committed", i)
		}
	}
	// The broker reuses its batches: mutating a committed one changes
	// nothing stored.
	wantSubA, wantWill := subA, *rec.Will
	wantWill.Payload = []byte("gone")
	subA.Filter, rec.Will.Payload[0] = "mutated", 'X'
	// n1's server goes (its journal is not closed first: no flush, no
	// handover of its own): nothing of its memory helps.
	n1.Close()

	claim(t, n2, key)
	a := load(t, j2, key)
	if !a.found {
		t.Fatal("session not found on n2")
	}
	want := *rec
	want.DisconnectedAt = disc
	want.Will = &wantWill
	want.Subscriptions = []broker.StoredSubscription{subB, wantSubA} // by filter
	want.Queue = []broker.StoredDelivery{
		{Seq: s1, QoS: 1, SubIDs: []uint32{7}, PacketID: 11, State: broker.AwaitPuback,
			Msg: broker.StoredMessage{Topic: "acme/a/1", Payload: []byte("one"), QoS: 1, Properties: props, Origin: "acme\x00pub"}},
		{Seq: s2, QoS: 2, PacketID: 12, State: broker.AwaitPubcomp, Share: "acme\x00g", ShareFilter: "acme/b"},
		{Seq: s4, QoS: 2, Retain: true, Msg: broker.StoredMessage{Topic: "acme/a/4", Payload: []byte("four"), QoS: 2}},
	}
	want.InboundQoS2 = []uint16{5, 9}
	want.InboundWrites = map[uint16]uint64{9: 0xfeedface}
	// The highest Seq ever enqueued, kept after its delivery went (s3
	// was dequeued): the adopting node catches up from the log after it.
	want.LastSeq = max(s1, s2, s3, s4)
	a.s.DisconnectedAt = a.s.DisconnectedAt.UTC()
	same(t, "adopted session", a.s, &want)
	if o := load(t, j2, other); !o.found || o.s.Version != packet.V311 || len(o.s.Subscriptions) != 0 {
		t.Fatalf("tenant-less session of the same client id: %+v", o)
	}
	// What LoadSession reported belongs to the Restorer.
	a.s.Will.Payload[0] = 'Y'
	a.s.Queue[0].SubIDs[0] = 42
	a.s.Queue[0].Msg.Payload[0] = 'Y'
	a.s.Queue[0].Msg.Properties.CorrelationData[0] = 9
	if again := load(t, j2, key); string(again.s.Will.Payload) != "gone" || again.s.Queue[0].SubIDs[0] != 7 ||
		string(again.s.Queue[0].Msg.Payload) != "one" || again.s.Queue[0].Msg.Properties.CorrelationData[0] != 1 {
		t.Fatalf("a second adoption sees what the Restorer changed: %+v", again.s)
	}
	if load(t, j2, "nobody").found {
		t.Fatal("operations naming no session created one")
	}
	if load(t, j2, "new").found {
		t.Fatal("a session of a refused batch was stored")
	}
	// Adoptions created no JetStream consumer.
	for _, name := range []string{sessionsStream, logStream} {
		s, err := n2.js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if c := info.State.Consumers; c != 0 {
			t.Fatalf("stream %s after adoptions: %d consumers", name, c)
		}
	}
	if c := j2.Counters(); c.Adopted != 3 || c.DeliveriesDropped != 0 {
		t.Fatalf("counters %+v: want 3 adoptions that found a session, none dropped", c)
	}
}

// TestJournalDurableNeedsQuorum: with two of three nodes gone a durable
// Commit fails within its bound (it never hangs), and a non-durable one
// returns at once and its failure is counted.
func TestJournalDurableNeedsQuorum(t *testing.T) {
	ms, js := journalCluster(t)
	key := "quorum"
	claim(t, ms[0], key)
	load(t, js[0], key)
	commit(t, js[0], broker.Op{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{Version: packet.V311}})
	js[1].Close()
	js[2].Close()
	ms[1].Close()
	ms[2].Close()

	start := time.Now()
	sub := broker.StoredSubscription{Filter: "q/#", QoS: 1}
	err := js[0].Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpPutSubscription, ClientID: key, Sub: &sub}}}, true)
	if err == nil {
		t.Fatal("durable commit without a quorum succeeded")
	}
	// journalTimeout (5 s) plus the stall bound: far below this, unless
	// the commit waits for something it should not.
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("durable commit failed after %s, not within its bound", el)
	}
	if c := js[0].Counters(); c.CommitFailed != 1 {
		t.Fatalf("CommitFailed = %d, want 1", c.CommitFailed)
	}
	before := js[0].Counters().AsyncFailed
	if err := js[0].Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpDeleteSubscription, ClientID: key, Filter: "q/#"}}}, false); err != nil {
		t.Fatalf("non-durable commit: %v", err)
	}
	mqtttest.Eventually(t, 20*time.Second, func() bool { return js[0].Counters().AsyncFailed > before }, "the unstored non-durable write counted")

	// The bytes of writes waiting for an acknowledgement are released
	// when they fail; past journalInFlightBytes a write fails at once.
	big := &broker.StoredSession{Version: packet.V5, Will: &broker.StoredMessage{Topic: "q/will", Payload: make([]byte, 1<<20)}}
	for range 4 {
		if err := js[0].Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpPutSession, ClientID: key, Session: big}}}, false); err != nil {
			t.Fatal(err)
		}
	}
	mqtttest.Eventually(t, 20*time.Second, func() bool { return js[0].inFlight.Load() == 0 }, "the failed writes' bytes released")
	js[0].inFlight.Add(journalInFlightBytes) // as if that many waited
	err = js[0].Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpPutSession, ClientID: key, Session: big}}}, false)
	js[0].inFlight.Add(-journalInFlightBytes)
	if !errors.Is(err, errJournalBusy) {
		t.Fatalf("a write past the in-flight bound: %v, want errJournalBusy", err)
	}
}

// TestJournalFencing: a node that lost a session (a newer claim adopted
// it) and still writes is ignored, whether its write lands before or
// after the new owner's first write; and the fencing token survives the
// owner record's deletion at release (whose epoch then starts at 1
// again).
func TestJournalFencing(t *testing.T) {
	ms, js := journalCluster(t)
	n1, n2 := ms[0], ms[1]
	key := "fenced"
	sub := func(f string) *broker.StoredSubscription { return &broker.StoredSubscription{Filter: f, QoS: 1} }
	put := func(j *Journal, f string) {
		t.Helper()
		commit(t, j, broker.Op{Kind: broker.OpPutSubscription, ClientID: key, Sub: sub(f)})
	}

	// n1 claims twice (epoch 2), then releases: the owner record goes.
	claim(t, n1, key)
	claim(t, n1, key)
	load(t, js[0], key)
	commit(t, js[0], broker.Op{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{Version: packet.V5}})
	put(js[0], "a")
	old, _ := n1.fence(key)
	n1.Release(key)
	mqtttest.Eventually(t, 10*time.Second, func() bool {
		_, err := n1.kv.Get(context.Background(), ownerKey(key))
		return err != nil
	}, "n1's owner record deleted")

	// n2 claims: epoch 1 again, but a higher fencing token.
	claim(t, n2, key)
	n2.mu.Lock()
	epoch := n2.mu.held[key]
	n2.mu.Unlock()
	rev, _ := n2.fence(key)
	if epoch != 1 || rev <= old {
		t.Fatalf("n2's claim: epoch %d, token %d after n1's %d", epoch, rev, old)
	}
	if a := load(t, js[1], key); !a.found || len(a.s.Subscriptions) != 1 {
		t.Fatalf("n2 adopts: %+v", a)
	}
	// n1 still writes (its journal keeps the session's last token): after
	// n2's marker, before n2 writes anything.
	put(js[0], "stale-1")
	put(js[1], "b")
	put(js[0], "stale-2")

	a := load(t, js[2], key)
	var got []string
	for _, s := range a.s.Subscriptions {
		got = append(got, s.Filter)
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("subscriptions adopted by n3: %q, want [a b]", got)
	}
	if f := js[2].Counters().Fenced; f != 2 {
		t.Fatalf("Fenced = %d, want 2", f)
	}
	// A kick makes the kicked node's journal forget the session before
	// the claim that kicked it returns.
	claim(t, ms[2], key)
	js[1].mu.Lock()
	sh := js[1].mu.shadows[sessionSubject(key)]
	js[1].mu.Unlock()
	if sh != nil {
		t.Fatal("n2's journal still keeps the session after n3's claim kicked it")
	}
}

// TestJournalCompaction: many commits leave few messages on the
// session's subject (snapshots replace them) and the adopted state is
// exactly the one committed; a deleted session leaves its subject to
// expire and a session made again after it starts empty.
func TestJournalCompaction(t *testing.T) {
	ms, js := journalCluster(t)
	n1 := ms[0]
	j1 := js[0]
	key := "compact"
	claim(t, n1, key)
	load(t, j1, key)
	commit(t, j1, broker.Op{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{Version: packet.V311, ExpiryInterval: broker.NoExpiry}})
	const rounds = 600
	seqs := make([]uint64, rounds)
	for i := range seqs {
		seqs[i] = logPublish(t, n1, msgQoS("c/t", i))
	}
	live := map[uint64]bool{}
	for i, seq := range seqs {
		ops := []broker.Op{{Kind: broker.OpEnqueue, ClientID: key, Delivery: &broker.StoredDelivery{Seq: seq, QoS: 1}}}
		live[seq] = true
		if i >= 5 { // keep five queued
			ops = append(ops, broker.Op{Kind: broker.OpDequeue, ClientID: key, Seq: seqs[i-5]})
			delete(live, seqs[i-5])
		}
		if i%50 == 0 {
			ops = append(ops, broker.Op{Kind: broker.OpPutSubscription, ClientID: key, Sub: &broker.StoredSubscription{Filter: "c/#", QoS: byte(i / 50 % 3)}})
		}
		if err := j1.Commit(&broker.Batch{Ops: ops}, i == rounds-1); err != nil {
			t.Fatal(err)
		}
	}
	subj := sessionSubject(key)
	mqtttest.Eventually(t, 20*time.Second, func() bool { return subjectMsgs(t, n1, subj) <= 2*compactMin }, "the subject compacted")
	if c := j1.Counters(); c.Snapshots == 0 {
		t.Fatalf("no snapshot written: %+v", c)
	}
	a := load(t, js[1], key)
	var got []uint64
	for _, d := range a.s.Queue {
		got = append(got, d.Seq)
		if string(d.Msg.Payload) == "" {
			t.Fatalf("delivery %d without its message", d.Seq)
		}
	}
	if want := seqs[rounds-5:]; !slices.Equal(got, want) {
		t.Fatalf("adopted queue %v, want %v", got, want)
	}
	if len(a.s.Subscriptions) != 1 || a.s.Subscriptions[0].QoS != 550/50%3 /* the last put, round 550 */ {
		t.Fatalf("adopted subscriptions %+v", a.s.Subscriptions)
	}

	// Deleted: the journal compacts to one expiring snapshot; made again,
	// the session is empty.
	commit(t, j1, broker.Op{Kind: broker.OpDeleteSession, ClientID: key})
	mqtttest.Eventually(t, 20*time.Second, func() bool { return subjectMsgs(t, n1, subj) == 1 }, "the deleted session's subject compacted to one message")
	if load(t, js[2], key).found {
		t.Fatal("deleted session found")
	}
	commit(t, j1, broker.Op{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{Version: packet.V5}})
	if a := load(t, js[2], key); !a.found || len(a.s.Subscriptions) != 0 || len(a.s.Queue) != 0 || a.s.Version != packet.V5 {
		t.Fatalf("session made again after its delete: %+v", a.s)
	}
}

// msgQoS returns a QoS 1 message numbered i.
func msgQoS(topic string, i int) *session.Message {
	m := session.NewMessage(topic, []byte{'m', byte(i), byte(i >> 8)})
	m.QoS = 1
	return m
}

// TestJournalLogMessageGone: a delivery whose log message was removed,
// or whose log subject is not a valid topic's, is dropped and counted;
// the others are reported with their messages; an AwaitPubcomp delivery
// needs no message.
func TestJournalLogMessageGone(t *testing.T) {
	ms, js := journalCluster(t)
	n1 := ms[0]
	key := "gone"
	claim(t, n1, key)
	load(t, js[0], key)
	keep := logPublish(t, n1, msgQoS("g/keep", 1))
	lost := logPublish(t, n1, msgQoS("g/lost", 2))
	pubcomp := logPublish(t, n1, msgQoS("g/pubcomp", 3))
	// "g/+" is a filter, not a topic name.
	bad := logPublishRaw(t, n1, logRoot+".m.g.=2B", appendEnvelope(nil, msgQoS("x", 4), "n1", 1, time.Now()))
	last := logPublish(t, n1, msgQoS("g/last", 5))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := n1.js.Stream(ctx, logStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{lost, pubcomp} {
		if err := s.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	enq := func(seq uint64) broker.Op {
		return broker.Op{Kind: broker.OpEnqueue, ClientID: key, Delivery: &broker.StoredDelivery{Seq: seq, QoS: 1}}
	}
	commit(t, js[0], broker.Op{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{Version: packet.V311}},
		enq(keep), enq(lost), enq(pubcomp), enq(bad), enq(last),
		broker.Op{Kind: broker.OpSetInflight, ClientID: key, Delivery: &broker.StoredDelivery{Seq: pubcomp, PacketID: 3, State: broker.AwaitPubcomp}})
	a := load(t, js[1], key)
	var got []string
	for _, d := range a.s.Queue {
		got = append(got, d.Msg.Topic)
	}
	if !slices.Equal(got, []string{"g/keep", "", "g/last"}) || a.s.Queue[1].Seq != pubcomp {
		t.Fatalf("adopted deliveries' topics %q", got)
	}
	if d := js[1].Counters().DeliveriesDropped; d != 2 {
		t.Fatalf("DeliveriesDropped = %d, want 2", d)
	}
}

// TestJournalLoadSkipsLocalSessions: Load reports the local store's
// retained messages and skips (and counts) its sessions; retained
// operations of a Commit go to the local store.
func TestJournalLoadSkipsLocalSessions(t *testing.T) {
	ms := startAll(t, configs(t, 1, 1))
	waitReady(t, ms)
	local := memstore.New()
	if err := local.Commit(&broker.Batch{Ops: []broker.Op{
		{Kind: broker.OpPutSession, ClientID: "old", Session: &broker.StoredSession{Version: packet.V311}},
		{Kind: broker.OpPutSubscription, ClientID: "old", Sub: &broker.StoredSubscription{Filter: "x"}},
	}}, true); err != nil {
		t.Fatal(err)
	}
	j := ms[0].Journal(local)
	defer j.Close()
	if err := j.Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpPutRetained, Retained: &broker.StoredMessage{Topic: "r/1", Payload: []byte("v")}}}}, true); err != nil {
		t.Fatal(err)
	}
	st, err := broker.LoadAll(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sessions) != 0 || len(st.Retained) != 1 || st.Retained[0].Topic != "r/1" {
		t.Fatalf("Load: %d sessions, retained %+v", len(st.Sessions), st.Retained)
	}
	if c := j.Counters(); c.LocalSessions != 1 || c.Commits != 0 {
		t.Fatalf("counters %+v: want 1 local session skipped, no journal commit", c)
	}
	if _, err := ms[0].js.Stream(context.Background(), sessionsStream); err != nil {
		t.Fatalf("sessions stream: %v", err)
	}
}

// TestJournalConcurrentCommits: sessions committed from several
// goroutines at once, mostly without waiting, while their subjects are
// compacted, are adopted on another node exactly as committed: each
// session's operations land in the order of its commits.
func TestJournalConcurrentCommits(t *testing.T) {
	ms, js := journalCluster(t)
	const writers, rounds = 6, 150
	seqs := make([]uint64, rounds)
	for i := range seqs {
		seqs[i] = logPublish(t, ms[0], msgQoS("cc/t", i))
	}
	keys := make([]string, writers)
	for w := range writers {
		keys[w] = broker.SessionKey("t", string(rune('a'+w)))
		claim(t, ms[0], keys[w])
		load(t, js[0], keys[w])
	}
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			key := keys[w]
			err := js[0].Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{Version: packet.V5}}}}, true)
			for i := 0; err == nil && i < rounds; i++ {
				// A durable enqueue, then a lazy dequeue of the one before
				// it: the dequeue must never land before its enqueue.
				err = js[0].Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpEnqueue, ClientID: key, Delivery: &broker.StoredDelivery{Seq: seqs[i], QoS: 1}}}}, i%10 == 0)
				if err == nil && i > 0 {
					err = js[0].Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpDequeue, ClientID: key, Seq: seqs[i-1]}}}, false)
				}
			}
			if err == nil {
				err = js[0].Commit(&broker.Batch{Ops: []broker.Op{{Kind: broker.OpPutInbound, ClientID: key, PacketID: uint16(w + 1)}}}, true)
			}
			errs <- err
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	compactionsDone(t, js[0])
	for w, key := range keys {
		a := load(t, js[1], key)
		if !a.found || len(a.s.Queue) != 1 || a.s.Queue[0].Seq != seqs[rounds-1] || !slices.Equal(a.s.InboundQoS2, []uint16{uint16(w + 1)}) {
			t.Fatalf("session %q adopted as %+v", key, a.s)
		}
	}
	if c := js[0].Counters(); c.Snapshots == 0 || c.AsyncFailed != 0 {
		t.Fatalf("counters %+v: want snapshots and no failed write", c)
	}
}

// TestJournalAdoptAfterLeaderLoss: the node leading PETREL_SESSIONS,
// which wrote the session, goes away; a survivor adopts the session
// once the stream has a new leader (the adoption's marker is retried
// until then, within the adoption's bound) and gets everything
// committed durably.
func TestJournalAdoptAfterLeaderLoss(t *testing.T) {
	ms, js := journalCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := ms[0].js.Stream(ctx, sessionsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	li := slices.IndexFunc(ms, func(m member) bool { return m.cfg.Node == info.Cluster.Leader })
	if li < 0 {
		t.Fatalf("leader %q is not a node", info.Cluster.Leader)
	}
	leader, survivor := ms[li], ms[(li+1)%3]
	key := "leader-loss"
	claim(t, leader, key)
	load(t, js[li], key)
	seq := logPublish(t, leader, msgQoS("ll/t", 1))
	commit(t, js[li], broker.Op{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{Version: packet.V5}},
		broker.Op{Kind: broker.OpPutSubscription, ClientID: key, Sub: &broker.StoredSubscription{Filter: "ll/#", QoS: 1}},
		broker.Op{Kind: broker.OpEnqueue, ClientID: key, Delivery: &broker.StoredDelivery{Seq: seq, QoS: 1}})
	leader.Close()

	// The owners bucket may have lost its leader too: claim until it
	// answers.
	mqtttest.Eventually(t, 30*time.Second, func() bool {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return survivor.Claim(c, key) == nil
	}, "a survivor's claim")
	a := load(t, js[(li+1)%3], key)
	if !a.found || len(a.s.Subscriptions) != 1 || len(a.s.Queue) != 1 || a.s.Queue[0].Seq != seq || string(a.s.Queue[0].Msg.Payload) != "m\x01\x00" {
		t.Fatalf("adopted after the leader's loss: %+v", a.s)
	}
}
