package cluster

import (
	"bytes"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/topic"
	"github.com/petrel-mqtt/petrel/packet"
)

// journalSeeds are records of every kind.
func journalSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	props := &packet.Properties{ContentType: "c"}
	props.Set(packet.PropContentType)
	rec := &broker.StoredSession{Version: packet.V5, ExpiryInterval: 10, DisconnectedAt: time.Unix(5, 6),
		Will:      &broker.StoredMessage{Topic: "w", Payload: []byte("p"), QoS: 1, Properties: props, Expiry: time.Unix(9, 0), Origin: "o"},
		WillDelay: 3, Holder: &broker.StoredHolder{Tenant: "t", Roles: []string{"r"}, Attrs: map[string]string{"k": "v"}}}
	sub := &broker.StoredSubscription{Filter: "a/#", QoS: 2, NoLocal: true, RetainHandling: 1, SubID: 4}
	ops := []*broker.Op{
		{Kind: broker.OpPutSession, ClientID: "k", Session: rec},
		{Kind: broker.OpPutSubscription, ClientID: "k", Sub: sub},
		{Kind: broker.OpDeleteSubscription, ClientID: "k", Filter: "b"},
		{Kind: broker.OpEnqueue, ClientID: "k", Delivery: &broker.StoredDelivery{Seq: 77, QoS: 1, SubIDs: []uint32{4, 5}, Share: "s", ShareFilter: "f"}},
		{Kind: broker.OpSetInflight, ClientID: "k", Delivery: &broker.StoredDelivery{Seq: 77, PacketID: 3, State: broker.AwaitPubcomp}},
		{Kind: broker.OpDequeue, ClientID: "k", Seq: 77},
		{Kind: broker.OpPutInbound, ClientID: "k", PacketID: 9, Seq: 1 << 40},
		{Kind: broker.OpDeleteInbound, ClientID: "k", PacketID: 9},
		{Kind: broker.OpDeleteSession, ClientID: "k"},
	}
	o, err := appendOps(nil, 12, "k", ops)
	if err != nil {
		tb.Fatal(err)
	}
	st := &jstate{}
	rec1, err := decodeRecord(o)
	if err != nil {
		tb.Fatal(err)
	}
	st.applyRecord(&jrecord{kind: recOps, epoch: 1, ops: rec1.ops[:5]})
	snap, err := appendSnapshot(nil, "k", st, 13)
	if err != nil {
		tb.Fatal(err)
	}
	empty, _ := appendSnapshot(nil, "k", &jstate{}, 14)
	marker, _ := appendOps(nil, 15, "k", nil)
	return [][]byte{o, snap, empty, marker}
}

// TestJournalRecordRoundTrip: every record kind decodes to what was
// encoded, and encodes again to the same bytes.
func TestJournalRecordRoundTrip(t *testing.T) {
	for i, b := range journalSeeds(t) {
		rec, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if again := reencode(t, rec); !bytes.Equal(again, b) {
			t.Fatalf("seed %d: encodes again to\n%x\nnot\n%x", i, again, b)
		}
	}
	// The snapshot holds the state after the first five operations.
	rec, _ := decodeRecord(journalSeeds(t)[1])
	s := rec.snap
	if s.sess == nil || s.sess.Will == nil || string(s.sess.Will.Payload) != "p" || len(s.subs) != 1 || s.dels[77] == nil ||
		s.dels[77].state != broker.AwaitPubcomp || s.dels[77].pid != 3 || len(s.dels[77].subIDs) != 2 || rec.epoch != 13 {
		t.Fatalf("snapshot decoded as %+v", s)
	}
}

// TestJournalInboundWriteIDs: an inbound packet id keeps its log write
// id through an ops record and a snapshot; a record of the version
// before write ids decodes with none.
func TestJournalInboundWriteIDs(t *testing.T) {
	ops := []*broker.Op{{Kind: broker.OpPutSession, ClientID: "k", Session: &broker.StoredSession{Version: packet.V5}},
		{Kind: broker.OpPutInbound, ClientID: "k", PacketID: 9, Seq: 0xabcdef},
		{Kind: broker.OpPutInbound, ClientID: "k", PacketID: 10}}
	b, err := appendOps(nil, 1, "k", ops)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	st := &jstate{}
	st.applyRecord(rec)
	if len(st.inbound) != 2 || st.inbound[9] != 0xabcdef || st.inbound[10] != 0 {
		t.Fatalf("folded inbound ids %v", st.inbound)
	}
	snap, err := appendSnapshot(nil, "k", st, 2)
	if err != nil {
		t.Fatal(err)
	}
	if rec, err = decodeRecord(snap); err != nil || len(rec.snap.inbound) != 2 || rec.snap.inbound[9] != 0xabcdef {
		t.Fatalf("snapshot decoded as %+v, %v", rec, err)
	}
	// Version 1: byte version, kind, uv epoch, str key, uv 1 op,
	// OpPutInbound, uv packet id.
	v1 := []byte{journalVersionNoWrite, recOps, 3, 1, 'k', 1, byte(broker.OpPutInbound), 9}
	if rec, err = decodeRecord(v1); err != nil || len(rec.ops) != 1 || rec.ops[0].PacketID != 9 || rec.ops[0].Seq != 0 {
		t.Fatalf("version 1 record decoded as %+v, %v", rec, err)
	}
	v1[0] = journalVersion // the same bytes as version 2 lack the write id
	if _, err := decodeRecord(v1); err == nil {
		t.Fatal("a version 2 record without its inbound write id decoded")
	}
}

// reencode encodes a decoded record again.
func reencode(tb testing.TB, rec *jrecord) []byte {
	tb.Helper()
	b, err := encodeRecord(rec)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func encodeRecord(rec *jrecord) ([]byte, error) {
	if rec.kind == recSnapshot {
		return appendSnapshot(nil, rec.key, rec.snap, rec.epoch)
	}
	ops := make([]*broker.Op, len(rec.ops))
	for i := range rec.ops {
		ops[i] = &rec.ops[i]
	}
	return appendOps(nil, rec.epoch, rec.key, ops)
}

// FuzzJournalRecord: decoding never panics, and what decodes folds and
// encodes again to a record that decodes the same way.
func FuzzJournalRecord(f *testing.F) {
	for _, b := range journalSeeds(f) {
		f.Add(b)
	}
	f.Add([]byte{journalVersionNoWrite, recOps, 3, 1, 'k', 1, byte(broker.OpPutInbound), 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		st := &jstate{}
		st.applyRecord(rec)
		again, err := encodeRecord(rec)
		if err != nil {
			// A will the packet codec decodes but refuses to encode
			// (the journal then refuses the write): not a decoder fault.
			return
		}
		rec2, err := decodeRecord(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if third := reencode(t, rec2); !bytes.Equal(third, again) {
			t.Fatal("encoding is not stable")
		}
	})
}

// FuzzJournalLogMessage: a log message (subject and body) decodes, never
// panicking, to nil or to a message on a valid topic name.
func FuzzJournalLogMessage(f *testing.F) {
	f.Add(logRoot+".m.a.b", appendEnvelope(nil, msgQoS("a/b", 1), "n1", 1, time.Now()))
	f.Add(logRoot+".m.g.=2B", appendEnvelope(nil, msgQoS("x", 1), "n1", 1, time.Now()))
	f.Add("r.a", []byte{1})
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		m := decodeJournalLogMessage(subject, time.Now(), body)
		if m == nil {
			return
		}
		if err := topic.ValidateName(m.Topic); err != nil {
			t.Fatalf("decoded a message on %q: %v", m.Topic, err)
		}
	})
}
