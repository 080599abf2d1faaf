package cluster

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// The message log: stream PETREL_MSGS holds every QoS>=1 message
// published on any node (a client's publish, a will, an admin publish),
// replicated, once however many sessions want it. The publishing node
// writes it before it acknowledges the publisher (Log); every node
// follows the stream in order and hands each message to its broker
// (log_follow.go); a session resumed on another node reads what it
// missed by sequence (ReadLog, log_read.go).
const (
	// logStream is the message log's stream.
	logStream = "PETREL_MSGS"
	// logRoot prefixes a message's live subject in the log: the subject
	// of a message on topic t is logRoot + "." + TopicSubject(t), so the
	// filter codec (FilterSubjects) selects log messages too.
	logRoot = "petrel.log"
)

// Bounds of the log's writer.
const (
	// logAckWait bounds the wait for a quorum of the log's replicas to
	// store a message: past it Log's done gets ErrLogNoQuorum. It covers
	// an election after a graceful leader stop (under 1.5 s), not one
	// after a crash (4 to 9 s): those publishes fail rather than wait.
	logAckWait = 5 * time.Second
	// logRetryFor bounds how long a write whose acknowledgement timed
	// out is written again (settleLog): past an election after a crash
	// (4 to 9 s), inside the stream's duplicate window (2 minutes).
	logRetryFor = 20 * time.Second
	// errCodeDuplicateInProgress is JetStream's answer to a write whose id
	// the stream is still storing (nats-server's
	// JSStreamDuplicateMessageConflict, 10158; nats.go names no constant).
	errCodeDuplicateInProgress jetstream.ErrorCode = 10158
	// logNoLeaderFor bounds how long a write that found no leader ("no
	// responders": an election runs, or too few nodes are up) is
	// written again: an election after a crash (4 to 9 s) is waited
	// for, a minority refuses within it.
	logNoLeaderFor = 10 * time.Second
	// logRetryPause spaces those writes.
	logRetryPause = 100 * time.Millisecond
	// logPendingMsgs and logPendingBytes bound the messages written to
	// the log and not yet stored by a quorum (nats.go keeps each until
	// then, at most logAckWait): past either, Log refuses at once
	// (ErrLogFull). A message larger than logPendingBytes alone is taken
	// when none is pending.
	logPendingMsgs  = 65536
	logPendingBytes = 64 << 20
	// logRefusalsWaiting bounds the refusals waiting for the completion
	// goroutine to report them; past it Log reports a refusal itself,
	// before it returns.
	logRefusalsWaiting = 65536
)

// Errors Log's done reports, one per reason (errors.Is).
var (
	// ErrLogNoQuorum: a quorum of the log's replicas did not store the
	// message within logAckWait (no leader: too few nodes up, an
	// election after a crash). The message may still be stored later.
	ErrLogNoQuorum = errors.New("cluster: message log: not stored by a quorum in time")
	// ErrLogFull: logPendingMsgs messages or logPendingBytes bytes wait
	// for their quorum already; the message was not written.
	ErrLogFull = errors.New("cluster: message log: too many messages waiting for their quorum")
	// ErrLogTooLarge: the message (envelope and payload) exceeds the
	// NATS payload limit (64 MiB) or its topic the subject codec's.
	ErrLogTooLarge = errors.New("cluster: message log: message too large for the log")
	// ErrLogRefused: JetStream refused the write (its error follows).
	ErrLogRefused = errors.New("cluster: message log: write refused")
)

// logEntry is one Log call until its done has been called.
type logEntry struct {
	done func(seq uint64, dup bool, err error)
	// dup: the stream already held a copy under the entry's id when its
	// first write arrived (LogOnce: another writer's). rewritten: the
	// entry was written again after a timeout, so a later duplicate
	// answer may be its own first copy (not reported as dup).
	dup, rewritten bool
	// until: a write whose acknowledgement timed out is written again,
	// under the same Nats-Msg-Id, until then (logRetryFor); noLeader: one
	// that found no leader, until then (logNoLeaderFor).
	until, noLeader time.Time
	m               *nats.Msg // what is written
	order           uint64    // its Log call's place in call order
	held            bool      // among logWriter's held writes (under its mu)
	sent            bool      // published at least once (under its mu)
	size            int64
	seq             uint64
	err             error
	// settled: seq or err is final (set under logWriter.mu).
	settled bool
}

// logWriter tracks Log's writes until their done is called: written
// entries in call order (done is called in that order, once each is
// settled), and refusals (reported at once, ahead of pending writes).
type logWriter struct {
	// wake holds a token when there is something to report (or the
	// writer closed).
	wake chan struct{}

	mu struct {
		sync.Mutex
		queue   []*logEntry // written, in call order, oldest first
		refused []*logEntry // refused, to report
		// held: writes to send again (a timeout, no leader) once
		// logRetryPause passed, in call order; while holding, new writes
		// join them there instead of going out before them.
		held    []*logEntry
		holding bool
		order   uint64 // the last call's order
		byMsg   map[*nats.Msg]*logEntry
		pending int   // written and not yet settled
		bytes   int64 // their sizes
		closed  bool  // no more writes; report what is left, then stop
	}
	// Bounds; tests lower them before the first Log.
	maxMsgs  int
	maxBytes int64
	// ids numbers the writes of this life of the node (their Nats-Msg-Id).
	ids atomic.Uint64
	// sendMu orders what goes to the server: a write sent at once and a
	// round of held writes sent again never interleave.
	sendMu sync.Mutex
	// retryFor is how long a write whose acknowledgement timed out is
	// written again (logRetryFor; tests lower it).
	retryFor time.Duration
}

func newLogWriter() *logWriter {
	w := &logWriter{wake: make(chan struct{}, 1), maxMsgs: logPendingMsgs, maxBytes: logPendingBytes, retryFor: logRetryFor}
	w.mu.byMsg = make(map[*nats.Msg]*logEntry)
	return w
}

func (w *logWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// LogHost is what the log's follower calls on the broker, from one
// goroutine, in sequence order. The broker (the broker.FabricHost given
// to Bind) implements it; without it the node does not follow the log.
type LogHost interface {
	// LogFrom tells the broker that the next message it gets follows
	// sequence seq, and that nothing up to seq will come: called once
	// before the first DeliverLogged, and again when the follower starts
	// over after a gap it could not fill (messages discarded by the
	// log's retention before it read them, a log recreated).
	LogFrom(seq uint64)
	// DeliverLogged hands over the log's message at sequence seq (every
	// one, this node's own included): the broker enqueues it for the
	// local persistent sessions it matches, with seq as the delivery's
	// sequence. msg is nil for a message that did not decode (its
	// position only; counted in Counters.Malformed). It must not block
	// on subscribers. The broker keeps msg: the node does not change it.
	DeliverLogged(msg *session.Message, seq uint64, here bool)
}

// logHostRef boxes the LogHost for an atomic pointer.
type logHostRef struct{ h LogHost }

// logHost returns the bound LogHost, nil when the host is not one.
func (n *Node) logHost() LogHost {
	if r := n.logHostp.Load(); r != nil {
		return r.h
	}
	return nil
}

// logSubject returns the subject of topic's messages in the log.
func logSubject(topic string) (string, error) {
	s, err := TopicSubject(topic)
	if err != nil {
		return "", err
	}
	return logRoot + "." + s, nil
}

// Log writes msg, published on this node (a client's QoS>=1 publish, a
// will, an admin publish), to the message log, asynchronously, and calls
// done once: with the log's sequence of the message once a quorum of
// the log's replicas stored it, or with an error that says why not
// (errors.Is: ErrLogNoQuorum, ErrClosed, ErrNotReady, ErrLogFull,
// ErrLogTooLarge, ErrLogRefused). Log never waits for another node.
// Messages logged by one goroutine are stored in call order
// [MQTT-4.6.0-2], [MQTT-4.6.0-3], and their done calls come in that
// order too, with one exception: across a change of the log's leader,
// a write the old leader took as it went, followed by writes that went
// straight to the new one, is known lost only when its acknowledgement
// times out (logAckWait), and is then stored after them. A write that
// found no leader, or timed out, is held and written again with the
// writes made meanwhile and the older ones still unanswered, in call
// order (holdLocked, resendHeld), for up to logNoLeaderFor or
// logRetryFor; past that it fails with ErrLogNoQuorum. A refusal (an
// error known when Log is called) is reported at once, ahead of
// messages still waiting for their quorum.
//
// done runs on a goroutine of the node's, never the caller's, except
// when more than 65,536 refusals already wait to be reported or the
// node is closed: then before Log returns. It must not block long, since
// the next done calls wait for it. The message's 5.0 expiry is stored
// relative to the time the log stores it [MQTT-3.3.2-5].
func (n *Node) Log(msg *session.Message, done func(seq uint64, err error)) {
	if done == nil {
		done = func(uint64, error) {}
	}
	n.LogOnce(msg, "", func(seq uint64, _ bool, err error) { done(seq, err) })
}

// LogOnce is Log under the write id id ("" for one of the node's own):
// the stream keeps one copy of the messages written under one id within
// its duplicate window (two minutes), whichever node writes them. done's
// dup reports that the copy stored is an earlier write's under the same
// id, not this one's (then seq is that copy's). The broker writes a
// persistent session's QoS 2 publish under an id the session's journal
// keeps with its packet id, so that the client's resend on any node
// after a crash is stored once, whether or not the first write was
// [MQTT-4.3.3-2].
func (n *Node) LogOnce(msg *session.Message, id string, done func(seq uint64, dup bool, err error)) {
	if done == nil {
		done = func(uint64, bool, error) {}
	}
	e := &logEntry{done: done}
	subject, err := logSubject(msg.Topic)
	if err != nil {
		n.refuseLog(e, fmt.Errorf("%w: %w", ErrLogTooLarge, err))
		return
	}
	select {
	case <-n.assets:
	default:
		n.refuseLog(e, ErrNotReady)
		return
	}
	body := appendEnvelope(make([]byte, 0, envFixed+24+len(n.cfg.Node)+len(msg.Origin)+len(msg.Payload)), msg, n.cfg.Node, n.incarnation, time.Now())
	if len(body) > maxPayload {
		n.refuseLog(e, ErrLogTooLarge)
		return
	}
	e.size = int64(len(body))
	now := time.Now()
	e.until = now.Add(n.lw.retryFor)
	e.noLeader = now.Add(min(logNoLeaderFor, n.lw.retryFor))
	m := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	// The id makes a write again after a timed-out acknowledgement
	// harmless: the stream keeps one copy (its duplicate window).
	if id == "" {
		id = "n." + n.cfg.Node + "." + strconv.FormatUint(n.incarnation, 10) + "." + strconv.FormatUint(n.lw.ids.Add(1), 10)
	} else {
		id = "w." + id // apart from the nodes' own ("n.")
	}
	m.Header.Set(jetstream.MsgIDHeader, id)
	w := n.lw
	w.mu.Lock()
	switch {
	case w.mu.closed:
		w.mu.Unlock()
		n.refuseLog(e, ErrClosed)
		return
	case w.mu.pending >= w.maxMsgs, w.mu.pending > 0 && w.mu.bytes+e.size > w.maxBytes:
		w.mu.Unlock()
		n.refuseLog(e, ErrLogFull)
		return
	}
	w.mu.queue = append(w.mu.queue, e)
	w.mu.byMsg[m] = e
	w.mu.pending++
	w.mu.bytes += e.size
	w.mu.order++
	e.m, e.order = m, w.mu.order
	n.count.logPending.Store(int64(w.mu.pending))
	if w.mu.holding {
		// Writes are being held for a round (holdLocked): this one
		// goes out after them, in call order.
		e.held = true
		w.mu.held = append(w.mu.held, e)
		w.mu.Unlock()
		return
	}
	e.sent = true
	w.mu.Unlock()
	// nats.go's own retry after "no responders" is off: its retried
	// message would go out after later ones; settleLog holds it instead.
	w.sendMu.Lock()
	_, err = n.logJS.PublishMsgAsync(m, jetstream.WithRetryAttempts(0), jetstream.WithStallWait(time.Millisecond))
	w.sendMu.Unlock()
	if err != nil {
		n.settleLog(m, 0, err)
	}
}

// refuseLog reports e's refusal: queued for the completion goroutine,
// or at once when logRefusalsWaiting are queued already or the node
// closed (its completion goroutine is gone).
func (n *Node) refuseLog(e *logEntry, err error) {
	n.countLogFailure(err)
	e.err, e.settled = err, true
	w := n.lw
	w.mu.Lock()
	if !w.mu.closed && len(w.mu.refused) < logRefusalsWaiting {
		w.mu.refused = append(w.mu.refused, e)
		w.mu.Unlock()
		w.signal()
		return
	}
	w.mu.Unlock()
	e.done(0, false, err)
}

// countLogFailure counts a failed Log by its reason.
func (n *Node) countLogFailure(err error) {
	c := &n.count
	switch {
	case errors.Is(err, ErrLogFull):
		c.logFull.Add(1)
	case errors.Is(err, ErrLogNoQuorum):
		c.logNoQuorum.Add(1)
	case errors.Is(err, ErrClosed):
		c.logClosed.Add(1)
	case errors.Is(err, ErrNotReady):
		c.logNotReady.Add(1)
	case errors.Is(err, ErrLogTooLarge):
		c.logTooLarge.Add(1)
	default:
		c.logRefused.Add(1)
	}
	n.logDrop(&c.lastLogFailed, "cluster: message not written to the message log", "err", err)
}

// logAcked is the log's JetStream ack handler (nats.go's goroutine).
func (n *Node) logAcked(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	n.settleLogDup(m, ack.Sequence, ack.Duplicate, nil)
}

// logFailed is the log's JetStream error handler: nats.go calls it for
// an ack that timed out (with its own lock held: it must not call
// nats.go back), for "no responders" and for an error from the stream.
func (n *Node) logFailed(_ jetstream.JetStream, m *nats.Msg, err error) {
	n.settleLog(m, 0, err)
}

// settleLog records the outcome of m's write (err nil: stored at seq). A
// write whose acknowledgement timed out may have been stored all the
// same (the leader died after its followers took it): it is written
// again under its Nats-Msg-Id, which the stream deduplicates, until
// logRetryFor passed, so that the publisher is told whether it is
// stored, never "failed" for a message that is (its resend would be a
// second copy).
func (n *Node) settleLog(m *nats.Msg, seq uint64, err error) {
	n.settleLogDup(m, seq, false, err)
}

// settleLogDup is settleLog with the acknowledgement's duplicate flag.
func (n *Node) settleLogDup(m *nats.Msg, seq uint64, dup bool, err error) {
	// Not known to be stored or not: the acknowledgement timed out, or
	// the stream is still storing the earlier copy of the same id.
	var apiErr *jetstream.APIError
	timedOut := err != nil && (errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeDuplicateInProgress)
	// Not stored: no server had the stream's leader (an election).
	noLeader := err != nil && (errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders))
	switch {
	case timedOut:
		err = fmt.Errorf("%w: %w", ErrLogNoQuorum, err)
	case err != nil:
		err = n.logError(err)
	}
	w := n.lw
	w.mu.Lock()
	e := w.mu.byMsg[m]
	if e == nil {
		w.mu.Unlock() // settled already (the node closed)
		return
	}
	if now := time.Now(); !w.mu.closed && (timedOut && now.Before(e.until) || noLeader && now.Before(e.noLeader)) {
		e.rewritten = true
		n.holdLocked(e)
		w.mu.Unlock()
		n.count.logRetried.Add(1)
		return
	}
	delete(w.mu.byMsg, m)
	e.dup = dup && err == nil && !e.rewritten
	n.settleLocked(e, seq, err)
	head := w.mu.queue[0] == e
	w.mu.Unlock()
	if err != nil {
		n.countLogFailure(err)
	} else {
		n.count.logged.Add(1)
	}
	if head {
		w.signal()
	}
}

// holdLocked puts e among the writes to send again, in call order, and
// starts a round unless one is due. w.mu is held.
func (n *Node) holdLocked(e *logEntry) {
	w := n.lw
	if e.held {
		return // a second failure of one write (sent again meanwhile)
	}
	e.held = true
	i, _ := slices.BinarySearchFunc(w.mu.held, e.order, func(x *logEntry, o uint64) int { return cmp.Compare(x.order, o) })
	w.mu.held = slices.Insert(w.mu.held, i, e)
	if !w.mu.holding {
		w.mu.holding = true
		go n.resendHeld() // not from nats.go's callback, which holds its lock
	}
}

// resendHeld sends the held writes again after logRetryPause, in call
// order, with the writes made meanwhile: a write that failed is never
// overtaken by a later one sent after it failed. The writes sent before
// the newest held one and still unanswered go again too, first: the
// leader that went may have taken them without storing them, which
// only their acknowledgement's timeout would tell, after the held ones
// were stored (the stream keeps one copy of what it has). Those that
// fail again are held for the next round. Past the node's end,
// closeLog settles them.
func (n *Node) resendHeld() {
	if !sleepCtx(n.ctx, logRetryPause) {
		return
	}
	w := n.lw
	w.sendMu.Lock()
	w.mu.Lock()
	held := w.mu.held
	w.mu.held, w.mu.holding = nil, false
	var batch []*logEntry
	if len(held) > 0 {
		newest := held[len(held)-1].order
		for _, e := range w.mu.queue { // call order
			if e.order > newest {
				break
			}
			// An unanswered one goes again once (rewritten); after that,
			// only when its own answer fails (held).
			if !e.settled && w.mu.byMsg[e.m] == e && (e.held || !e.rewritten) {
				// Sent before, a duplicate answer may now be this write's
				// own first copy: not reported as another writer's (dup).
				e.rewritten = e.rewritten || e.sent
				e.held, e.sent = false, true
				batch = append(batch, e)
			}
		}
	}
	w.mu.Unlock()
	var failed []*nats.Msg
	var errs []error
	for _, e := range batch {
		if _, err := n.logJS.PublishMsgAsync(e.m, jetstream.WithRetryAttempts(0), jetstream.WithStallWait(time.Millisecond)); err != nil {
			failed, errs = append(failed, e.m), append(errs, err)
		}
	}
	w.sendMu.Unlock()
	for i, m := range failed {
		n.settleLog(m, 0, errs[i])
	}
}

// settleLocked marks a written entry settled.
func (n *Node) settleLocked(e *logEntry, seq uint64, err error) {
	w := n.lw
	e.seq, e.err, e.settled = seq, err, true
	w.mu.pending--
	w.mu.bytes -= e.size
	n.count.logPending.Store(int64(w.mu.pending))
}

// logError maps a JetStream publish error to Log's errors.
func (n *Node) logError(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case n.ctx.Err() != nil:
		return fmt.Errorf("%w: %w", ErrClosed, err)
	case errors.As(err, &apiErr):
		return fmt.Errorf("%w: %w", ErrLogRefused, err)
	}
	// A timeout, no responders (no stream leader), the in-process
	// connection lost: no quorum stored it in time.
	return fmt.Errorf("%w: %w", ErrLogNoQuorum, err)
}

// logDoneLoop calls the done of every Log: refusals at once, writes in
// call order as each settles. It returns once the writer closed and
// everything was reported.
func (n *Node) logDoneLoop() {
	defer n.wg.Done()
	w := n.lw
	var batch []*logEntry
	for range w.wake {
		for {
			w.mu.Lock()
			batch = append(batch[:0], w.mu.refused...)
			clear(w.mu.refused)
			w.mu.refused = w.mu.refused[:0]
			i := 0
			for i < len(w.mu.queue) && w.mu.queue[i].settled {
				i++
			}
			batch = append(batch, w.mu.queue[:i]...)
			clear(w.mu.queue[:i])
			w.mu.queue = w.mu.queue[i:]
			if len(w.mu.queue) == 0 {
				w.mu.queue = nil // let the backing array go
			}
			finished := w.mu.closed && len(w.mu.queue) == 0
			w.mu.Unlock()
			for _, e := range batch {
				e.done(e.seq, e.dup, e.err)
			}
			if finished {
				return
			}
			if len(batch) == 0 {
				break
			}
			clear(batch)
		}
	}
}

// closeLog settles every write still waiting with ErrClosed and has the
// completion goroutine report them and stop. Log refuses from then on.
func (n *Node) closeLog() {
	w := n.lw
	w.mu.Lock()
	if w.mu.closed {
		w.mu.Unlock()
		return
	}
	w.mu.closed = true
	var failed int
	for m, e := range w.mu.byMsg {
		delete(w.mu.byMsg, m)
		n.settleLocked(e, 0, ErrClosed)
		failed++
	}
	w.mu.Unlock()
	n.count.logClosed.Add(uint64(failed))
	w.signal()
}
