package cluster

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestLogFollowedInOrder: messages logged on two nodes get their
// sequences, on one goroutine increasing in call order and reported in
// call order; every node's follower calls LogFrom first, then
// DeliverLogged for every message of the log (its own node's included),
// in sequence order, from one goroutine, each with its topic, payload,
// QoS, retain flag, origin, 5.0 properties and expiry.
func TestLogFollowedInOrder(t *testing.T) {
	ms := startLogged(t, configs(t, 3, 3))
	n1, n2 := ms[0], ms[1]
	start := ms[0].host.froms()[0]

	props := &packet.Properties{
		PayloadFormatIndicator: 1,
		ContentType:            "text/plain",
		ResponseTopic:          "reply/to",
		CorrelationData:        []byte{1, 2, 3},
		UserProperties:         []packet.UserProperty{{Key: "k", Value: "v"}},
	}
	for _, id := range []packet.PropertyID{packet.PropPayloadFormatIndicator, packet.PropContentType, packet.PropResponseTopic, packet.PropCorrelationData} {
		props.Set(id)
	}
	published := time.Now()
	var sent []*session.Message
	var r1, r2 logRecorder
	// More than one of the follower's and ReadLog's batches.
	const count = 600
	for i := range count {
		m := qos1("log/order", payloadf("m%d", i))
		switch i % 4 {
		case 1:
			m.QoS = 2
			m.Origin = "tenant\x00client"
		case 2:
			m.Properties = props
			m.Expiry = published.Add(time.Hour)
		case 3:
			m.Topic = "$SYS/log//x y"
			m.Retain = true
		}
		sent = append(sent, m)
		r1.log(n1.Node, m)
	}
	other := qos1("log/other", "from n2")
	r2.log(n2.Node, other)

	res := r1.wait(t, 60*time.Second, "n1's done calls")
	for i, x := range res {
		if x.err != nil {
			t.Fatalf("message %d: %v", i, x.err)
		}
		if x.order != i+1 {
			t.Fatalf("message %d: done was call %d, want %d (call order)", i, x.order, i+1)
		}
		if i > 0 && x.seq <= res[i-1].seq {
			t.Fatalf("message %d: seq %d after %d: not increasing in call order [MQTT-4.6.0-2]", i, x.seq, res[i-1].seq)
		}
		if x.seq <= start {
			t.Fatalf("message %d: seq %d, not after the log's last sequence %d when the followers started", i, x.seq, start)
		}
	}
	res2 := r2.wait(t, 30*time.Second, "n2's done call")
	if res2[0].err != nil {
		t.Fatal(res2[0].err)
	}
	bySeq := map[uint64]*session.Message{res2[0].seq: other}
	writer := map[uint64]string{res2[0].seq: n2.cfg.Node}
	for i, x := range res {
		bySeq[x.seq] = sent[i]
		writer[x.seq] = n1.cfg.Node
	}
	if c := n1.Counters(); c.Logged != count || c.LogPending != 0 {
		t.Fatalf("n1: Logged %d, LogPending %d; want %d, 0", c.Logged, c.LogPending, count)
	}

	for _, m := range ms {
		mqtttest.Eventually(t, 60*time.Second, func() bool { return len(m.host.delivered()) >= count+1 }, m.cfg.Node+" follows every message")
		m.host.checkOrder(t, m.cfg.Node)
		if got := m.Counters().LogFollowed; got < count+1 {
			t.Fatalf("%s: LogFollowed %d, want %d", m.cfg.Node, got, count+1)
		}
		for _, e := range m.host.delivered() {
			want := bySeq[e.seq]
			if want == nil {
				continue // logged by another test's leftovers: none here, but harmless
			}
			got := e.msg
			if got == nil {
				t.Fatalf("%s: seq %d delivered as malformed", m.cfg.Node, e.seq)
			}
			if got.Topic != want.Topic || !bytes.Equal(got.Payload, want.Payload) || got.QoS != want.QoS || got.Retain != want.Retain || got.Origin != want.Origin {
				t.Fatalf("%s: seq %d: got %q %q qos %d retain %v origin %q; want %q %q qos %d retain %v origin %q", m.cfg.Node, e.seq,
					got.Topic, got.Payload, got.QoS, got.Retain, got.Origin, want.Topic, want.Payload, want.QoS, want.Retain, want.Origin)
			}
			if !reflect.DeepEqual(got.Properties, want.Properties) {
				t.Fatalf("%s: seq %d: properties %+v, want %+v", m.cfg.Node, e.seq, got.Properties, want.Properties)
			}
			checkExpiry(t, got.Expiry, want.Expiry)
			if e.here != (writer[e.seq] == m.cfg.Node) {
				t.Fatalf("%s: seq %d written by %s handed over with here=%v", m.cfg.Node, e.seq, writer[e.seq], e.here)
			}
		}
	}
	if len(bySeq) != count+1 {
		t.Fatalf("%d distinct sequences for %d messages", len(bySeq), count+1)
	}
}

// checkExpiry fails unless got is want (zero for none) give or take the
// envelope's rounding up to a second and the time until the log stored
// the message [MQTT-3.3.2-5].
func checkExpiry(t testing.TB, got, want time.Time) {
	t.Helper()
	if got.IsZero() != want.IsZero() {
		t.Fatalf("expiry %v, want %v", got, want)
	}
	if !want.IsZero() && (got.Before(want.Add(-time.Second)) || got.After(want.Add(2*time.Second))) {
		t.Fatalf("expiry %v, want %v (counted from publication)", got, want)
	}
}

// TestLogNoQuorum: with two of three nodes gone, a logged message fails
// with ErrLogNoQuorum within the ack bound instead of hanging; the
// messages waiting for their quorum never exceed the writer's bound, and
// past it Log refuses at once with ErrLogFull (reported while the
// earlier ones still wait). Messages still waiting when the node closes
// fail with ErrClosed, and a Log after Close fails at once.
func TestLogNoQuorum(t *testing.T) {
	ms := startLogged(t, configs(t, 3, 3))
	n1 := ms[0]
	logWarm(t, n1.Node, "nq/warm")
	// n1 leads the log, then loses its followers: it stays leader for
	// about 10 s (nats-server's lost-quorum interval) and its writes wait
	// for a quorum that will not come. (Had another node led, the writes
	// would fail at once: no responders.)
	leadLog(t, n1.Node)
	ms[1].Close()
	ms[2].Close()

	const bound, over = 50, 30
	n1.lw.maxMsgs = bound
	n1.lw.retryFor = time.Second // a timed-out write is tried again, then fails
	var r logRecorder
	for i := range bound + over {
		r.log(n1.Node, qos1("nq/t", payloadf("%d", i)))
		if p := n1.Counters().LogPending; p > bound {
			t.Fatalf("%d messages waiting for their quorum, bound %d", p, bound)
		}
	}
	// The refusals are reported while the first bound messages still
	// wait for a quorum that will not come.
	mqtttest.Eventually(t, 20*time.Second, func() bool { return r.done() >= over }, "the refusals past the bound")
	if p := n1.Counters().LogPending; p != bound {
		t.Fatalf("LogPending %d when the refusals were reported, want %d still waiting: %+v", p, bound, n1.Counters())
	}
	res := r.wait(t, logAckWait+20*time.Second, "every message fails within the ack bound")
	for i, x := range res {
		want := ErrLogNoQuorum
		if i >= bound {
			want = ErrLogFull
		}
		if !errors.Is(x.err, want) || x.seq != 0 {
			t.Fatalf("message %d: seq %d, err %v; want %v", i, x.seq, x.err, want)
		}
	}
	if c := n1.Counters(); c.LogNoQuorum != bound || c.LogFull != over || c.LogPending != 0 {
		t.Fatalf("LogNoQuorum %d, LogFull %d, LogPending %d; want %d, %d, 0", c.LogNoQuorum, c.LogFull, c.LogPending, bound, over)
	}

	// Closing with messages waiting: each gets exactly one done.
	var closing logRecorder
	for i := range 10 {
		closing.log(n1.Node, qos1("nq/closing", payloadf("%d", i)))
	}
	n1.Close()
	for i, x := range closing.wait(t, 5*time.Second, "done for the messages waiting at Close") {
		if !errors.Is(x.err, ErrClosed) && !errors.Is(x.err, ErrLogNoQuorum) {
			t.Fatalf("message %d waiting at Close: %v", i, x.err)
		}
	}
	var after logRecorder
	after.log(n1.Node, qos1("nq/after", "x"))
	if res := after.all(); res[0].calls != 1 || !errors.Is(res[0].err, ErrClosed) {
		t.Fatalf("Log after Close: %+v, want ErrClosed before Log returns", res[0])
	}
}

// TestLogFollowerRestart: a node that restarts follows the log from its
// last sequence at that time: LogFrom gets it, and the next message
// logged is the next one it is handed.
func TestLogFollowerRestart(t *testing.T) {
	cfgs := configs(t, 3, 3)
	ms := startLogged(t, cfgs)
	n1 := ms[0]
	ms[1].Close()
	// n2 may have led the log: the first write waits for an election.
	logOK(t, n1.Node, "restart/first")
	var r logRecorder
	for i := range 5 {
		r.log(n1.Node, qos1("restart/t", payloadf("%d", i)))
	}
	res := r.wait(t, 30*time.Second, "messages logged while n2 is down")
	for _, x := range res {
		if x.err != nil {
			t.Fatal(x.err)
		}
	}
	last := res[len(res)-1].seq

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := Start(ctx, cfgs[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	h := &logHost{}
	if err := node.Bind(h); err != nil {
		t.Fatal(err)
	}
	n2 := logMember{node, h}
	waitFollowing(t, n2)
	if f := h.froms(); f[0] != last {
		t.Fatalf("restarted n2: LogFrom(%d), want %d (the log's last sequence)", f[0], last)
	}
	var more logRecorder
	more.log(n1.Node, qos1("restart/after", "new"))
	next := more.wait(t, 30*time.Second, "a message after the restart")[0]
	if next.err != nil {
		t.Fatal(next.err)
	}
	mqtttest.Eventually(t, 30*time.Second, func() bool { return len(h.delivered()) >= 1 }, "the restarted n2 gets the new message")
	h.checkOrder(t, "n2")
	if d := h.delivered()[0]; d.seq != next.seq || d.msg == nil || d.msg.Topic != "restart/after" {
		t.Fatalf("restarted n2 got seq %d %+v first, want seq %d restart/after", d.seq, d.msg, next.seq)
	}
}

// TestLogExpiryFromPublication: a message's 5.0 expiry counts from when
// it was published (stored in the log), not from when it is read
// [MQTT-3.3.2-5]: read 4 s later, a message with a 2 s expiry is gone
// and one with an hour left has its expiry an hour after publication.
func TestLogExpiryFromPublication(t *testing.T) {
	cfgs := configs(t, 1, 1)
	ms := startLogged(t, cfgs)
	n := ms[0]
	published := time.Now()
	short := qos1("exp/short", "s")
	short.Expiry = published.Add(2 * time.Second)
	long := qos1("exp/long", "l")
	long.Expiry = published.Add(time.Hour)
	var r logRecorder
	r.log(n.Node, short)
	r.log(n.Node, long)
	res := r.wait(t, 30*time.Second, "two messages logged")
	for _, x := range res {
		if x.err != nil {
			t.Fatal(x.err)
		}
	}
	readAt := published.Add(4 * time.Second)
	mqtttest.Eventually(t, 10*time.Second, func() bool { return time.Now().After(readAt) }, "4 s after publication")
	var got []*session.Message
	if _, err := n.ReadLog(context.Background(), 0, []string{"exp/#"}, func(_ uint64, m *session.Message) error {
		got = append(got, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Topic != "exp/long" {
		t.Fatalf("read %d messages, want exp/long only (exp/short expired 2 s after publication)", len(got))
	}
	checkExpiry(t, got[0].Expiry, long.Expiry)
	// The follower got both, each with its expiry from publication.
	mqtttest.Eventually(t, 10*time.Second, func() bool { return len(n.host.delivered()) == 2 }, "the follower gets both")
	for i, d := range n.host.delivered() {
		checkExpiry(t, d.msg.Expiry, []time.Time{short.Expiry, long.Expiry}[i])
	}
}

// TestLogPendingBytes: the bytes of the log writes waiting for their
// quorum are bounded too: past the bound Log refuses at once
// (ErrLogFull, while the earlier ones still wait), and a message larger
// than the bound alone is taken when nothing waits.
func TestLogPendingBytes(t *testing.T) {
	ms := startLogged(t, configs(t, 3, 3))
	n1 := ms[0]
	logOK(t, n1.Node, "pb/warm")
	leadLog(t, n1.Node)
	ms[1].Close()
	ms[2].Close()

	small := qos1("pb/small", string(make([]byte, 1000)))
	size := int64(len(appendEnvelope(nil, small, n1.cfg.Node, n1.incarnation, time.Now())))
	n1.lw.maxBytes = 3*size + size/2
	n1.lw.retryFor = time.Second
	big := qos1("pb/big", string(make([]byte, 5000)))
	var r logRecorder
	for range 4 {
		r.log(n1.Node, small)
	}
	r.log(n1.Node, big)
	mqtttest.Eventually(t, 20*time.Second, func() bool { return r.done() >= 2 }, "the refusals past the byte bound")
	if c := n1.Counters(); c.LogPending != 3 || c.LogFull != 2 {
		t.Fatalf("LogPending %d, LogFull %d when the refusals were reported; want 3 waiting, 2 refused", c.LogPending, c.LogFull)
	}
	res := r.wait(t, logAckWait+20*time.Second, "the waiting writes fail")
	for i, x := range res {
		want := ErrLogNoQuorum
		if i >= 3 {
			want = ErrLogFull
		}
		if !errors.Is(x.err, want) {
			t.Fatalf("message %d: %v, want %v", i, x.err, want)
		}
	}
	// Nothing waits now: the large message is written, not refused (a
	// refusal is counted before Log returns).
	var alone logRecorder
	alone.log(n1.Node, big)
	if c := n1.Counters(); c.LogFull != 2 || c.LogTooLarge != 0 {
		t.Fatalf("a message over the byte bound with nothing waiting: LogFull %d, LogTooLarge %d; want it written", c.LogFull, c.LogTooLarge)
	}
}

// TestLogOnceStoresAWriteIDOnce: messages written under one write id,
// from any node, are stored once; the second write's answer says so
// (dup) with the first copy's sequence, and the followers hand over that
// copy only. Writes without an id are each stored.
func TestLogOnceStoresAWriteIDOnce(t *testing.T) {
	ms := startLogged(t, configs(t, 3, 3))
	type answer struct {
		seq uint64
		dup bool
		err error
	}
	write := func(n *Node, msg *session.Message, id string) answer {
		t.Helper()
		ch := make(chan answer, 1)
		n.LogOnce(msg, id, func(seq uint64, dup bool, err error) { ch <- answer{seq, dup, err} })
		select {
		case a := <-ch:
			if a.err != nil {
				t.Fatal(a.err)
			}
			return a
		case <-time.After(30 * time.Second):
			t.Fatal("no answer")
		}
		return answer{}
	}
	first := write(ms[0].Node, qos1("once/t", "first"), "k.7.x")
	again := write(ms[1].Node, qos1("once/t", "again"), "k.7.x") // another node: the resend after a crash
	if first.dup || !again.dup || again.seq != first.seq {
		t.Fatalf("first %+v, again %+v: want the second a duplicate of the first", first, again)
	}
	other := write(ms[1].Node, qos1("once/t", "other"), "k.8.x")
	p1 := write(ms[0].Node, qos1("once/t", "plain"), "")
	p2 := write(ms[0].Node, qos1("once/t", "plain"), "")
	if other.dup || p1.dup || p2.dup || p1.seq == p2.seq || other.seq <= first.seq {
		t.Fatalf("other %+v, plain %+v %+v: want each stored", other, p1, p2)
	}
	mqtttest.Eventually(t, 30*time.Second, func() bool { return len(ms[2].host.delivered()) >= 4 }, "n3's follower")
	var got []string
	for _, e := range ms[2].host.delivered() {
		got = append(got, string(e.msg.Payload))
	}
	if !reflect.DeepEqual(got, []string{"first", "other", "plain", "plain"}) {
		t.Fatalf("n3's follower got %q", got)
	}
	// A write made while a round of held writes is due goes out with that
	// round, for the first time: a duplicate answer is still another
	// writer's copy (only a write sent before may meet its own).
	w := ms[1].Node.lw
	w.mu.Lock()
	w.mu.holding = true
	w.mu.Unlock()
	ch := make(chan answer, 1)
	ms[1].Node.LogOnce(qos1("once/t", "held"), "k.7.x", func(seq uint64, dup bool, err error) { ch <- answer{seq, dup, err} })
	go ms[1].Node.resendHeld()
	select {
	case a := <-ch:
		if a.err != nil || !a.dup || a.seq != first.seq {
			t.Fatalf("held write %+v: want a duplicate of %+v", a, first)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no answer to the held write")
	}
}

// TestLogWaitsForANewLeader: writes made while the log has no leader
// (its leader's node went away; the survivors elect another) are held
// and written again once a leader answers: none fails. Their order is
// logged, not asserted: a write the old leader took as it went is known
// lost only when its acknowledgement times out, and is stored after the
// writes that followed it (docs/clustering.md, "Not there yet").
func TestLogWaitsForANewLeader(t *testing.T) {
	ms := startLogged(t, configs(t, 3, 3))
	n1 := ms[0]
	logWarm(t, n1.Node, "nl/warm")
	leadLog(t, ms[1].Node)
	retried := n1.Counters().LogRetried
	var r logRecorder
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		for i := 0; i < 400; i++ {
			r.log(n1.Node, qos1("nl/t", payloadf("%d", i)))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	closed := time.Now()
	ms[1].Close() // the leader's node goes: an election
	t.Logf("the leader's node closed in %v", time.Since(closed).Round(time.Millisecond))
	<-stop
	res := r.wait(t, 60*time.Second, "every write answered")
	t.Logf("every write answered %v after the close began", time.Since(closed).Round(time.Millisecond))
	late := 0
	for i, x := range res {
		if x.err != nil {
			t.Fatalf("write %d failed across the election: %v", i, x.err)
		}
		if i > 0 && x.seq <= res[i-1].seq {
			late++
		}
	}
	t.Logf("%d writes, %d stored after a later one", len(res), late)
	if n1.Counters().LogRetried == retried {
		t.Fatal("no write was held: the election was not seen (the test tested nothing)")
	}
}

// TestNotReadyUntilFollowingTheLog: a node whose JetStream assets exist
// but whose follower of the message log has no consumer yet refuses
// claims (the broker then refuses CONNECTs with 0x88) and reports not
// ready: a client accepted then could miss the QoS 1/2 messages logged
// before the consumer started. Here the follower waits for the broker's
// Bind.
func TestNotReadyUntilFollowingTheLog(t *testing.T) {
	cfg := configs(t, 1, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	select {
	case <-n.assets:
	case <-ctx.Done():
		t.Fatal("the assets were not created")
	}
	if err := n.Claim(ctx, "t\x00early"); !errors.Is(err, ErrNotReady) {
		t.Fatalf("claim before the node follows the log: %v, want ErrNotReady", err)
	}
	if l := n.Local(); l.Ready {
		t.Fatal("local view ready before the node follows the log")
	}
	if st, _ := n.Status(ctx); st.Ready {
		t.Fatal("status ready before the node follows the log")
	}
	h := &logHost{}
	if err := n.Bind(h); err != nil {
		t.Fatal(err)
	}
	waitFollowing(t, logMember{n, h})
	mqtttest.Eventually(t, 20*time.Second, func() bool { return n.Local().Ready }, "ready once following the log")
	if err := n.Claim(ctx, "t\x00early"); err != nil {
		t.Fatalf("claim once following the log: %v", err)
	}
}
