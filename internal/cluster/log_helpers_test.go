package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/session"
)

// logEvent is one call of the follower on a logHost: LogFrom (msg nil,
// from true) or DeliverLogged.
type logEvent struct {
	from bool
	seq  uint64
	msg  *session.Message
	here bool
}

// logHost is a fakeHost that is also a LogHost: it records the
// follower's calls in order and notes any two that overlapped.
type logHost struct {
	fakeHost
	inCall     atomic.Bool
	overlapped atomic.Bool
	lmu        sync.Mutex
	events     []logEvent
}

func (h *logHost) enter() {
	if !h.inCall.CompareAndSwap(false, true) {
		h.overlapped.Store(true)
	}
}

func (h *logHost) leave() { h.inCall.Store(false) }

func (h *logHost) LogFrom(seq uint64) {
	h.enter()
	defer h.leave()
	h.lmu.Lock()
	h.events = append(h.events, logEvent{from: true, seq: seq})
	h.lmu.Unlock()
}

func (h *logHost) DeliverLogged(msg *session.Message, seq uint64, here bool) {
	h.enter()
	defer h.leave()
	h.lmu.Lock()
	h.events = append(h.events, logEvent{seq: seq, msg: msg, here: here})
	h.lmu.Unlock()
}

// log returns the calls so far.
func (h *logHost) log() []logEvent {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	return append([]logEvent(nil), h.events...)
}

// froms returns the LogFrom calls' sequences.
func (h *logHost) froms() []uint64 {
	var out []uint64
	for _, e := range h.log() {
		if e.from {
			out = append(out, e.seq)
		}
	}
	return out
}

// delivered returns the DeliverLogged calls.
func (h *logHost) delivered() []logEvent {
	var out []logEvent
	for _, e := range h.log() {
		if !e.from {
			out = append(out, e)
		}
	}
	return out
}

// checkOrder fails t unless the calls start with LogFrom, never
// overlapped, and every DeliverLogged has the sequence after the one
// before (or after the LogFrom before it).
func (h *logHost) checkOrder(t testing.TB, node string) {
	t.Helper()
	if h.overlapped.Load() {
		t.Fatalf("%s: the follower's calls overlapped (not from one goroutine)", node)
	}
	evs := h.log()
	if len(evs) == 0 || !evs[0].from {
		t.Fatalf("%s: first call %+v, want LogFrom", node, evs)
	}
	next := evs[0].seq + 1
	for _, e := range evs[1:] {
		if e.from {
			next = e.seq + 1
			continue
		}
		if e.seq != next {
			t.Fatalf("%s: DeliverLogged seq %d, want %d (every message, in order)", node, e.seq, next)
		}
		next++
	}
}

// logMember is a started node bound to a logHost.
type logMember struct {
	*Node
	host *logHost
}

// startLogged starts a node per configuration, like startAll, each bound
// to a logHost, waits for their JetStream assets and for each follower's
// first LogFrom.
func startLogged(t testing.TB, cfgs []Config) []logMember {
	t.Helper()
	ms := make([]logMember, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n, err := Start(ctx, c)
			if err != nil {
				errs[i] = err
				return
			}
			h := &logHost{}
			errs[i] = n.Bind(h)
			ms[i] = logMember{n, h}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range ms {
			if m.Node != nil {
				m.Close()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	for _, m := range ms {
		waitFollowing(t, m)
	}
	return ms
}

// waitFollowing waits until m's follower called LogFrom and has its
// consumer (m ready).
func waitFollowing(t testing.TB, m logMember) {
	t.Helper()
	mqtttest.Eventually(t, 60*time.Second, func() bool { return len(m.host.froms()) > 0 }, m.cfg.Node+"'s follower starts (LogFrom)")
	mqtttest.Eventually(t, 60*time.Second, m.ready, m.cfg.Node+" ready (its follower has its consumer)")
}

// logResult is what one Log's done got, and in which order done ran.
type logResult struct {
	seq   uint64
	err   error
	order int // 1 + the number of done calls before it
	calls int // times done was called
}

// logRecorder logs messages and records their done calls.
type logRecorder struct {
	mu      sync.Mutex
	results []logResult
	calls   int
}

// log logs msg on n as result i (i: the number of earlier log calls).
func (r *logRecorder) log(n *Node, msg *session.Message) {
	r.mu.Lock()
	i := len(r.results)
	r.results = append(r.results, logResult{})
	r.mu.Unlock()
	n.Log(msg, func(seq uint64, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.calls++
		res := &r.results[i]
		res.seq, res.err, res.calls, res.order = seq, err, res.calls+1, r.calls
	})
}

// done returns the number of results whose done ran.
func (r *logRecorder) done() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// all returns the results.
func (r *logRecorder) all() []logResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]logResult(nil), r.results...)
}

// wait waits until every logged message's done ran.
func (r *logRecorder) wait(t testing.TB, within time.Duration, what string) []logResult {
	t.Helper()
	mqtttest.Eventually(t, within, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.calls >= len(r.results)
	}, what)
	res := r.all()
	for i, x := range res {
		if x.calls != 1 {
			t.Fatalf("%s: message %d: done called %d times", what, i, x.calls)
		}
	}
	return res
}

// qos1 returns a QoS 1 message.
func qos1(topic, payload string) *session.Message {
	m := session.NewMessage(topic, []byte(payload))
	m.QoS = 1
	return m
}

// payloadf formats a payload.
func payloadf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// logOK logs a message on n until one is stored (a leader may be being
// elected) and returns its sequence.
func logOK(t testing.TB, n *Node, topic string) uint64 {
	t.Helper()
	var seq uint64
	mqtttest.Eventually(t, 60*time.Second, func() bool {
		var r logRecorder
		r.log(n, qos1(topic, "probe"))
		res := r.wait(t, logAckWait+10*time.Second, "a probe's done")
		seq = res[0].seq
		return res[0].err == nil
	}, "a message stored by the log")
	return seq
}

// leadLog makes n the leader of the message log: it asks the current
// leader to step down in n's favour until n leads.
func leadLog(t testing.TB, n *Node) {
	t.Helper()
	req := []byte(`{"placement":{"preferred":"` + n.cfg.Node + `"}}`)
	mqtttest.Eventually(t, 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := n.js.Stream(ctx, logStream)
		if err != nil {
			return false
		}
		if ci := s.CachedInfo().Cluster; ci != nil && ci.Leader == n.cfg.Node {
			return true
		}
		_, _ = n.ctl.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+logStream, req)
		return false
	}, n.cfg.Node+" leads the message log")
}

// logWarm logs one message on n with every node up and fails t unless
// it is stored: the log has its leader.
func logWarm(t *testing.T, n *Node, topic string) {
	t.Helper()
	var warm logRecorder
	warm.log(n, qos1(topic, "x"))
	if res := warm.wait(t, 30*time.Second, "a message logged with every node up"); res[0].err != nil {
		t.Fatal(res[0].err)
	}
}
