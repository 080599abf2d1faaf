package broker

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// The cluster's message log (FabricLog) with a session journal
// (SessionJournal): the path of a QoS 1/2 message to a persistent session
// in a cluster.
//
//   - The publishing node writes the message to the log, and acknowledges
//     the publisher (PUBACK/PUBREC) only once a quorum stored it (a
//     client's publish: the durable pipeline waits for logWait; a will or
//     an admin publish: logged without a waiter).
//   - Live delivery (route, DeliverRemote) serves clean sessions, QoS 0
//     deliveries and share groups as before, and leaves a persistent
//     session's QoS 1/2 plain deliveries to the log.
//   - Every node follows the log (one follower per node, in the log's
//     order) and hands each message to DeliverLogged, which delivers it to
//     the node's persistent sessions with the log's sequence as the
//     delivery's Seq. Those deliveries are written to the journal (a
//     quorum) before they are queued, so nothing is sent that the journal
//     does not hold, and a session's journal holds every delivery up to
//     its LastSeq: a node that adopts the session (adopt.go) takes the
//     rest from the log after it.

// logWait is the outcome of one Log call a publish's acknowledgement
// waits for.
type logWait struct {
	done chan struct{}
	sent time.Time
	seq  uint64
	dup  bool // the log kept an earlier write's copy under the same id
	err  error
}

// logWrite starts writing msg to the cluster's log, under write id id
// ("" for none), and returns what to wait for.
func (b *Broker) logWrite(msg *session.Message, id string) *logWait {
	w := &logWait{done: make(chan struct{}), sent: time.Now()}
	b.flog.LogOnce(msg, id, func(seq uint64, dup bool, err error) {
		w.seq, w.dup, w.err = seq, dup, err
		close(w.done)
	})
	return w
}

// The write id of a persistent session's QoS 2 publish. Its inbound
// packet id is journaled (OpPutInbound) with a random write id before
// the message is written to the log under the id inboundWriteID makes of
// it. The node may die between the two, or after the log stored it and
// before the PUBREC left: the client then sends the PUBLISH again (DUP),
// on whatever node adopts the session, which finds the packet id on
// record with its write id. It writes the message again under the same
// id: the log keeps one copy (within its duplicate window, two
// minutes), and the answer says whether that copy was the first write's
// (routed from the log already: nothing more to do) or this one's (routed
// now) [MQTT-4.3.3-2]. Without the write id the resend could only be
// taken for a duplicate, and a message the log never stored was lost.

// newInboundWrite returns a random write id, never 0.
func newInboundWrite() uint64 {
	for {
		if w := rand.Uint64(); w != 0 {
			return w
		}
	}
}

// inboundWriteID is the log write id of session key's QoS 2 publish
// packet id pid recorded with write: the session and the packet id keep
// two sessions' random ids apart.
func inboundWriteID(key string, pid uint16, write uint64) string {
	h := fnv.New64a()
	h.Write([]byte(key))
	return strconv.FormatUint(h.Sum64(), 36) + "." + strconv.FormatUint(uint64(pid), 10) + "." + strconv.FormatUint(write, 36)
}

// logStall is how long a connection's oldest log write may wait for its
// quorum before the reader stops writing more of the connection's
// messages until it is answered. A write the cluster could not take
// (its leader gone, an election running) fails; one written after it,
// once a new leader is elected, would be stored: the publisher's resend
// of the failed one would then come after it. Holding the reader when
// the log stops answering keeps the window for that to the few
// milliseconds around an election's end; while the log answers, acks
// come back in a millisecond or so and this never waits.
const logStall = 100 * time.Millisecond

// logPublish writes a QoS 1/2 publish of c to the log, in c's order. A
// 3.x connection whose earlier write failed writes nothing more: it is
// being closed (storeFailed), and its client resends in order once it
// reconnects [MQTT-4.6.0-1].
func (c *conn) logPublish(msg *session.Message, id string) (*logWait, error) {
	for len(c.logQ) > 0 {
		w := c.logQ[0]
		select {
		case <-w.done:
		default:
			if time.Since(w.sent) < logStall {
				return c.logNext(msg, id), nil
			}
			<-w.done
		}
		if w.err != nil && c.version != packet.V5 {
			return nil, &closeError{code: packet.UnspecifiedError, reason: reasonNetwork, err: w.wait()}
		}
		c.logQ[0] = nil
		c.logQ = c.logQ[1:]
	}
	return c.logNext(msg, id), nil
}

// logNext starts the log write of msg and queues it in c.logQ.
func (c *conn) logNext(msg *session.Message, id string) *logWait {
	w := c.b.logWrite(msg, id)
	c.logQ = append(c.logQ, w)
	return w
}

// logUnwaited writes msg, published by the broker itself (a will, the
// admin API), to the log without a publisher to answer. Nobody would send
// it again, and other nodes' sessions get QoS 1/2 only from the log, so a
// failed write (an election after a leader's crash) is tried again for up
// to unwaitedRetryFor; a failure past it is logged and counted.
func (b *Broker) logUnwaited(msg *session.Message) {
	if b.flog == nil || msg.QoS == 0 || isSysTopic(msg.Topic) {
		return
	}
	b.logUnwaitedUntil(msg, time.Now().Add(unwaitedRetryFor), 100*time.Millisecond)
}

// unwaitedRetryFor bounds how long a will or admin publish is written
// again (logUnwaited): past an election after a crash (4 to 9 s).
const unwaitedRetryFor = 30 * time.Second

func (b *Broker) logUnwaitedUntil(msg *session.Message, until time.Time, pause time.Duration) {
	b.flog.LogOnce(msg, "", func(_ uint64, _ bool, err error) {
		if err == nil {
			return
		}
		if time.Now().Add(pause).Before(until) && !b.shutdown.Load() {
			time.AfterFunc(pause, func() { b.logUnwaitedUntil(msg, until, min(2*pause, 2*time.Second)) })
			return
		}
		b.stats.cluster.logUnwaited.Add(1)
		b.log.Warn("cluster: a message the broker published could not be written to the message log; other nodes' sessions miss it",
			"topic", msg.Topic, "err", err)
	})
}

// LogFrom implements LogHost: the follower's next message comes after
// seq. A jump past what was routed means this node's persistent sessions
// miss the messages between: logged (the log had dropped them, or the
// follower could not read them).
func (b *Broker) LogFrom(seq uint64) {
	if b.flog == nil {
		return
	}
	b.logMu.Lock()
	if b.logMu.started && seq > b.logMu.applied {
		b.stats.cluster.logSkipped.Add(seq - b.logMu.applied)
		b.log.Error("cluster: the message log's follower skipped messages; this node's persistent sessions miss them",
			"from", b.logMu.applied+1, "to", seq)
	}
	b.logMu.applied, b.logMu.started = seq, true
	b.logMu.Unlock()
}

// DeliverLogged implements LogHost: it delivers the log's message seq to
// this node's persistent sessions (QoS 1/2 plain subscriptions) that have
// not had it yet, writing the deliveries to the journal before queueing
// them (logPipe). It waits only when the pipe is full.
func (b *Broker) DeliverLogged(msg *session.Message, seq uint64, here bool) {
	if b.flog == nil {
		return // no journal: live delivery serves every session
	}
	b.logMu.Lock()
	if seq > b.logMu.applied {
		b.logMu.applied = seq
	}
	b.logMu.started = true
	var rt *routing
	if msg != nil && !msg.Expired(b.opts().Now()) { // [MQTT-3.3.2-5]
		rt = b.routeLogged(msg, seq, here)
	}
	b.logMu.Unlock()
	if rt == nil {
		return
	}
	if len(rt.staged) == 0 {
		rt.release()
		return
	}
	b.logPipe.submit(b, rt)
}

// routeLogged matches the log's message seq against the plain
// subscriptions and stages its deliveries to persistent sessions
// (deliverShare, rt.logSeq). logMu is held.
func (b *Broker) routeLogged(msg *session.Message, seq uint64, here bool) *routing {
	rt := routingPool.Get().(*routing)
	rt.logSeq, rt.logHere = seq, here
	ep := entryPool.Get().(*[]entry)
	ents := keepShare(b.subs.Match(msg.Topic, (*ep)[:0]), "")
	b.deliverEntries(rt, msg, ents)
	clear(ents)
	*ep = ents[:0]
	entryPool.Put(ep)
	return rt
}

// stageLogged stages d, the log's delivery rt.logSeq to persistent
// session s, unless s had it already (a follower that restarted behind,
// or an adoption that read it first).
func stageLogged(rt *routing, s *session.Session, d session.Delivery) int {
	if rt.logSeq <= s.LastSeq() {
		return 0
	}
	d.Seq = rt.logSeq
	s.NoteSeq(d.Seq)
	rt.staged = append(rt.staged, staged{s: s, d: d})
	return 1
}

// logPipe writes the log's deliveries to the journal, many messages in
// one durable commit, and queues them once written, in the log's order.
// Its goroutine runs while routings wait.
type logPipe struct {
	mu      sync.Mutex
	cond    sync.Cond
	jobs    []*routing
	running bool
}

// logPipeMax bounds the routed messages waiting for their journal write;
// beyond it the follower waits (its own buffers then fill, and the log
// keeps the messages).
const logPipeMax = 4096

func (p *logPipe) submit(b *Broker, rt *routing) {
	p.mu.Lock()
	for len(p.jobs) >= logPipeMax {
		p.cond.Wait()
	}
	p.jobs = append(p.jobs, rt)
	start := !p.running
	p.running = true
	p.mu.Unlock()
	if start {
		go b.logLoop()
	}
}

// logRetryMax is the longest pause between two attempts at a journal
// write the cluster refused (no quorum): the deliveries wait, in order,
// and nothing after them is queued meanwhile.
const logRetryMax = 2 * time.Second

func (b *Broker) logLoop() {
	p := &b.logPipe
	var batch Batch
	for {
		p.mu.Lock()
		jobs := p.jobs
		p.jobs = nil
		if len(jobs) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.cond.Broadcast()
		p.mu.Unlock()
		batch.Reset()
		for _, rt := range jobs {
			rt.appendWrites(&batch, nil)
		}
		pause := 50 * time.Millisecond
		for {
			err := b.commit(&batch, true) // logged and counted by commit
			if err == nil {
				break
			}
			b.stats.cluster.journalRetries.Add(1)
			select {
			case <-b.done:
				for _, rt := range jobs {
					rt.release()
				}
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, logRetryMax)
		}
		for _, rt := range jobs {
			b.queueStaged(rt)
			rt.release()
		}
	}
}

// wait returns the log's error for the message, once known.
func (w *logWait) wait() error {
	<-w.done
	if w.err != nil {
		return fmt.Errorf("cluster message log: %w", w.err)
	}
	return nil
}
