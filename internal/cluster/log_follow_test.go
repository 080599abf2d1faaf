package cluster

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeLogMsg is a message of the log as the ordered consumer delivers
// it: only what the follower reads.
type fakeLogMsg struct {
	jetstream.Msg
	subject string
	data    []byte
	md      jetstream.MsgMetadata
}

func (m fakeLogMsg) Subject() string { return m.subject }
func (m fakeLogMsg) Data() []byte    { return m.data }
func (m fakeLogMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &m.md, nil
}

func fakeLogged(t *testing.T, seq uint64, topic string, stored time.Time) fakeLogMsg {
	t.Helper()
	subject, err := logSubject(topic)
	if err != nil {
		t.Fatal(err)
	}
	body := appendEnvelope(nil, qos1(topic, payloadf("%d", seq)), "n1", 1, stored)
	return fakeLogMsg{subject: subject, data: body, md: jetstream.MsgMetadata{
		Sequence: jetstream.SequencePair{Stream: seq}, Timestamp: stored,
	}}
}

// TestLogFollowerPositions: the follower hands over every sequence once
// and in order: a copy from before a consumer restart is skipped; after
// a gap (messages the log discarded before they were read) it calls
// LogFrom with the last sequence it will never hand over, counted as a
// reset; a message that does not decode is handed over as its position
// only (nil), counted as Malformed.
func TestLogFollowerPositions(t *testing.T) {
	n := &Node{log: slog.New(slog.DiscardHandler)}
	h := &logHost{}
	f := logFollower{n: n, h: h}
	now := time.Now()
	f.from(10)
	f.deliver(fakeLogged(t, 11, "a", now))
	f.deliver(fakeLogged(t, 11, "a", now)) // a copy after a restart
	f.deliver(fakeLogged(t, 12, "b", now))
	f.deliver(fakeLogged(t, 20, "c", now)) // 13 to 19 discarded
	bad := fakeLogged(t, 21, "d", now)
	bad.data = []byte{0xff}
	f.deliver(bad)
	badSubject := fakeLogged(t, 22, "e", now)
	badSubject.subject = "petrel.log.m..x"
	f.deliver(badSubject)
	f.deliver(fakeLogged(t, 23, "f", now))

	want := []logEvent{{from: true, seq: 10}, {seq: 11}, {seq: 12}, {from: true, seq: 19}, {seq: 20}, {seq: 21}, {seq: 22}, {seq: 23}}
	got := h.log()
	if len(got) != len(want) {
		t.Fatalf("%d calls, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].from != w.from || got[i].seq != w.seq {
			t.Fatalf("call %d: from %v seq %d, want from %v seq %d", i, got[i].from, got[i].seq, w.from, w.seq)
		}
	}
	h.checkOrder(t, "follower")
	topics := map[uint64]string{11: "a", 12: "b", 20: "c", 23: "f"}
	for _, e := range h.delivered() {
		if want, ok := topics[e.seq]; ok {
			if e.msg == nil || e.msg.Topic != want {
				t.Fatalf("seq %d: %+v, want topic %q", e.seq, e.msg, want)
			}
		} else if e.msg != nil {
			t.Fatalf("seq %d: malformed message handed over as %+v, want nil", e.seq, e.msg)
		}
	}
	c := &n.count
	if r, m, f := c.followerResets.Load(), c.malformed.Load(), c.followed.Load(); r != 1 || m != 2 || f != 6 {
		t.Fatalf("FollowerResets %d, Malformed %d, LogFollowed %d; want 1, 2, 6", r, m, f)
	}
}

// FuzzDecodeLogMessage: decoding any subject and body never panics, and
// what decodes is a message whose log subject is the subject it came on
// (the topic codec is a bijection) and whose payload ends the body.
func FuzzDecodeLogMessage(f *testing.F) {
	stored := time.Unix(1_700_000_000, 0)
	m := qos1("a/b", "payload")
	m.Expiry = stored.Add(time.Minute)
	m.Origin = "t\x00c"
	for _, topic := range []string{"a/b", "$SYS/x", "a//b", "x y", ""} {
		subject, _ := logSubject(topic)
		f.Add(subject, appendEnvelope(nil, m, "n1", 7, stored))
	}
	f.Add("petrel.log.d.=24", []byte{envVersion, 0})
	f.Add("petrel.log.m", []byte{})
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		msg, err := decodeLogMessage(subject, data, stored)
		if err != nil {
			return
		}
		if back, err := logSubject(msg.Topic); err != nil || back != subject {
			t.Fatalf("subject %q gave topic %q, whose subject is %q (%v)", subject, msg.Topic, back, err)
		}
		if len(msg.Payload) > len(data) || string(msg.Payload) != string(data[len(data)-len(msg.Payload):]) {
			t.Fatalf("payload %q is not the end of the body", msg.Payload)
		}
		if !msg.Expiry.IsZero() && msg.Expiry.Before(stored) {
			t.Fatalf("expiry %v before the stored time %v", msg.Expiry, stored)
		}
	})
}
