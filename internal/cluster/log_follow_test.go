package cluster

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
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

// TestFollowerOutlivesItsConsumersNode: JetStream puts a follower's
// consumer on any of the log's peers. When that node dies, the follower
// (on a node that lives) notices the consumer's silence within two
// heartbeats (followHeartbeat) and goes on from a consumer on a
// survivor: a message logged after the death reaches it within
// seconds. With JetStream's default heartbeat (5 s) nothing reached it
// for 10 s and more, while the node's persistent sessions waited.
func TestFollowerOutlivesItsConsumersNode(t *testing.T) {
	ms := startLogged(t, configs(t, 3, 3))
	logWarm(t, ms[0].Node, "fo/warm")
	a, b := placedElsewhere(t, ms)
	t.Logf("%s's follower reads from a consumer on %s", a.cfg.Node, b.cfg.Node)
	leadLog(t, a.Node) // the log keeps its leader: no election in the way
	var c logMember
	for _, m := range ms {
		if m.cfg.Node != a.cfg.Node && m.cfg.Node != b.cfg.Node {
			c = m
		}
	}
	killed := time.Now()
	b.srv.Shutdown() // abrupt: the consumer goes, its pull request unanswered
	seq := logOK(t, c.Node, "fo/after")
	logged := time.Since(killed)
	mqtttest.Eventually(t, 30*time.Second, func() bool {
		for _, e := range a.host.delivered() {
			if e.seq == seq {
				return true
			}
		}
		return false
	}, a.cfg.Node+"'s follower hands over a message logged after "+b.cfg.Node+" died")
	took := time.Since(killed)
	t.Logf("logged %v after the death; handed over after %v", logged.Round(time.Millisecond), took.Round(time.Millisecond))
	if bound := 7 * time.Second; took > bound {
		t.Fatalf("%s's follower took %v after its consumer's node died, over %v: it did not notice the silence in two heartbeats", a.cfg.Node, took.Round(time.Millisecond), bound)
	}
}

// placedElsewhere returns a node whose log follower's consumer lives on
// another node, b, that does not lead the JetStream meta group (whose
// death would hold the new consumer up for an election). While there is
// none, it deletes the followers' consumers: each follower makes a new
// one, placed at random again.
func placedElsewhere(t *testing.T, ms []logMember) (a, b logMember) {
	t.Helper()
	byNode := map[string]logMember{}
	for _, m := range ms {
		byNode[m.cfg.Node] = m
	}
	for range 20 {
		hosts := map[string]string{} // follower's node -> its consumer's node
		names := map[string]string{}
		mqtttest.Eventually(t, 30*time.Second, func() bool {
			clear(hosts)
			clear(names)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := ms[0].js.Stream(ctx, logStream)
			if err != nil {
				return false
			}
			l := st.ListConsumers(ctx)
			n := 0
			for ci := range l.Info() {
				for _, m := range ms {
					if strings.HasPrefix(ci.Name, "petrel_log_"+m.cfg.Node+"_") && ci.Cluster != nil && ci.Cluster.Leader != "" {
						hosts[m.cfg.Node], names[m.cfg.Node] = ci.Cluster.Leader, ci.Name
						n++
					}
				}
			}
			return l.Err() == nil && n == len(ms) && len(hosts) == len(ms) // one consumer each
		}, "each follower's one consumer listed")
		for _, m := range ms {
			if h := hosts[m.cfg.Node]; h != m.cfg.Node && !byNode[h].srv.JetStreamIsLeader() {
				return m, byNode[h]
			}
		}
		for _, name := range names {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = ms[0].js.DeleteConsumer(ctx, logStream, name)
			cancel()
		}
	}
	t.Fatal("no follower's consumer placed on another node than its own and the meta leader in 20 placements")
	return
}
