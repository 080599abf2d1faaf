package broker

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// durablePipe is a connection's durable pipeline: store writes that must
// be on disk before a packet answers them, committed together by one
// goroutine while any wait, their packets then sent in order. It carries
// the connection's inbound QoS 1/2 publishes (PUBACK/PUBREC after their
// deliveries are stored), its outbound QoS 2 releases (PUBREL after
// AwaitPubcomp is stored) and the removals of its completed stored QoS 2
// deliveries (their packet ids free after). The reader makes it at its
// first such write (most connections never have one).
type durablePipe struct {
	mu      sync.Mutex
	cond    sync.Cond
	jobs    []durableJob
	running bool
	// removals: jobPubcomp jobs, which ride the next commit of jobs
	// and never start one alone (flush aside): the id they free is given
	// again only 32767 stored deliveries later (session.PacketIDFor), so
	// the removal needs no fsync of its own, only one before that.
	removals []durableJob
	// flush makes the loop commit the removals even with no job
	// (flushRemovals).
	flush bool
	// out: the packets answering the jobs of one commit, queued for the
	// writer together (flushDurable); only durableLoop's goroutine uses it.
	out []packet.Packet
	// broken: a publish failed on a connection that is closing because
	// of it (3.x) or anyway: the publishes after it are not written
	// either, so that none of them is stored ahead of the failed one,
	// which the client sends again once it reconnects [MQTT-4.6.0-1].
	// Only durableLoop's goroutine uses it.
	broken bool
}

// errPipeBroken fails the publishes queued behind one that failed on a
// closing connection (durablePipe.broken).
var errPipeBroken = errors.New("broker: an earlier publish of the connection failed; the connection is closing")

// errTakenOver fails a QoS 2 publish of a persistent session whose
// packet id was journaled while another node took the session over
// (logAfter, remotelyTakenOver).
var errTakenOver = errors.New("broker: the session was taken over by another node; the publish was not logged")

// durableMax bounds the jobs waiting in a connection's durable pipeline;
// beyond it the reader waits (a client that does not wait for its acks is
// slowed to the disk's pace, and holds at most this many jobs). At this
// many removals waiting, they are committed without waiting for a job.
const durableMax = 1024

// jobKind says what a durableJob answers.
type jobKind uint8

const (
	// jobPublish: a QoS 1/2 publish waiting for its store write, then
	// queued and acknowledged.
	jobPublish jobKind = iota
	// jobAck: a publish's acknowledgement (code) that needs no write but
	// must not overtake the acks waiting [MQTT-4.6.0-2] [MQTT-4.6.0-3].
	jobAck
	// jobPubrel: the PUBREL answering an outbound QoS 2 delivery's
	// PUBREC, after its AwaitPubcomp record (seq != 0) is on disk; PUBRELs
	// keep the order of the PUBRECs [MQTT-4.6.0-4].
	jobPubrel
	// jobPubcomp: the removal of a stored QoS 2 delivery completed by
	// PUBCOMP (seq); its packet id cools until the removal is durable
	// (session.Cooled). Sends nothing.
	jobPubcomp
)

// durableJob is one entry of the pipeline (see jobKind).
type durableJob struct {
	kind  jobKind
	p     *packet.Publish   // jobPublish, jobAck
	msg   *session.Message  // jobPublish
	rt    *routing          // jobPublish: its staged deliveries
	extra Batch             // jobPublish: its inbound QoS 2 id, retained message
	code  packet.ReasonCode // jobAck, jobPubrel
	seq   uint64            // jobPubrel, jobPubcomp: the stored delivery (0: none to record)
	pid   uint16            // jobPubrel, jobPubcomp
	lw    *logWait          // jobPublish in a cluster with a message log: its write there
	// logAfter: a QoS 2 publish of a persistent session, written to the
	// cluster's log once the commit holding its packet id returned.
	logAfter bool
	// write: a persistent session's QoS 2 publish in a cluster, its log
	// write id (inboundWriteID); resend: the PUBLISH was sent again while
	// its packet id was on record with write (not routed yet: routed
	// once the log says its copy is this write's).
	write  uint64
	resend bool
}

// durablePending reports whether jobs wait in the pipeline; later acks
// must then wait too, to keep their order.
func (c *conn) durablePending() bool {
	if c.dur == nil {
		return false
	}
	c.dur.mu.Lock()
	defer c.dur.mu.Unlock()
	return c.dur.running
}

// submitDurable hands a job to the pipeline, starting its goroutine when
// it is not running.
func (c *conn) submitDurable(j durableJob) {
	if j.p != nil {
		pub := *j.p // the reader reuses the packet it decoded into
		j.p = &pub
	}
	if c.dur == nil {
		c.dur = &durablePipe{}
		c.dur.cond.L = &c.dur.mu
	}
	c.dur.mu.Lock()
	if j.kind == jobPubcomp {
		c.dur.removals = append(c.dur.removals, j)
		c.removalsWaiting.Add(1) // after c.dur is set: the writer then sees it
		if len(c.dur.removals) < durableMax {
			c.dur.mu.Unlock()
			return
		}
		c.dur.flush = true
	} else {
		for len(c.dur.jobs) >= durableMax {
			c.dur.cond.Wait()
		}
		c.dur.jobs = append(c.dur.jobs, j)
	}
	c.startDurableLocked()
}

// startDurableLocked starts the pipeline's goroutine unless it runs, and
// unlocks c.dur.mu.
func (c *conn) startDurableLocked() {
	start := !c.dur.running
	c.dur.running = true
	c.dur.mu.Unlock()
	if start {
		go c.durableLoop()
	}
}

// flushRemovals commits the removals waiting in the pipeline without
// waiting for a job to carry them: when the session's next delivery waits
// for the packet id one of them frees (the writer, going idle), and when
// the connection ends. Any goroutine may call it once removalsWaiting
// was seen non-zero (c.dur is set then).
func (c *conn) flushRemovals() {
	c.dur.mu.Lock()
	if len(c.dur.removals) == 0 {
		c.dur.mu.Unlock()
		return
	}
	c.dur.flush = true
	c.startDurableLocked()
}

// durableLoop writes what every waiting job must store in one durable
// commit, then completes the jobs in order (queues deliveries, sends acks
// and PUBRELs), until none waits. While it commits, the reader goes on
// reading: what arrives meanwhile rides the next commit.
func (c *conn) durableLoop() {
	var batch Batch
	for {
		c.dur.mu.Lock()
		jobs := c.dur.jobs
		c.dur.jobs = nil
		if len(jobs) == 0 && !c.dur.flush {
			c.dur.running = false
			c.dur.cond.Broadcast()
			c.dur.mu.Unlock()
			return
		}
		// The removals ride along (after the jobs: their deliveries'
		// AwaitPubcomp records were committed before their PUBRELs went
		// out, so no job here is for one of them).
		jobs = append(jobs, c.dur.removals...)
		clear(c.dur.removals)
		c.dur.removals = c.dur.removals[:0]
		c.removalsWaiting.Store(0)
		c.dur.flush = false
		c.dur.cond.Broadcast()
		c.dur.mu.Unlock()

		if c.dur.broken {
			for i := range jobs {
				c.finishDurable(&jobs[i], errPipeBroken)
				jobs[i] = durableJob{}
			}
			c.flushDurable()
			continue
		}
		batch.Reset()
		outbound := true // PUBRELs and removals only: nobody publishing waits on them
		for i := range jobs {
			switch j := &jobs[i]; j.kind {
			case jobPublish:
				outbound = false
				j.rt.appendWrites(&batch, &j.extra)
			case jobAck:
				outbound = false
			case jobPubrel:
				if j.seq != 0 {
					// After a restart the broker sends PUBREL, never the
					// PUBLISH again [MQTT-4.3.3-1]; see pubrec.
					batch.Add(Op{Kind: OpSetInflight, ClientID: c.key,
						Delivery: &StoredDelivery{Seq: j.seq, PacketID: j.pid, State: AwaitPubcomp}})
				}
			case jobPubcomp:
				batch.Add(Op{Kind: OpDequeue, ClientID: c.key, Seq: j.seq})
			}
		}
		err := c.commitDurable(&batch, outbound)
		if err == nil && c.remotelyTakenOver(jobs) {
			// The journal may have taken the packet ids after the new
			// owner read the session (its marker fences them out): the
			// new owner would not know them, and would route the
			// client's resend as a new message. Logged here, it would
			// then be stored twice [MQTT-4.3.3-2]; not logged, the
			// resend is its only copy.
			err = errTakenOver
		}
		if err == nil {
			for i := range jobs {
				if jobs[i].logAfter {
					jobs[i].lw = c.b.logWrite(jobs[i].msg, inboundWriteID(c.key, jobs[i].p.PacketID, jobs[i].write)) // in the connection's order
				}
			}
		}
		for i := range jobs {
			jerr := err
			if lw := jobs[i].lw; lw != nil {
				if lerr := lw.wait(); err == nil && lerr != nil {
					c.b.stats.cluster.logRefused.Add(1)
					jerr = lerr
				}
			}
			if jerr != nil && jobs[i].kind == jobPublish && c.b.flog != nil && (c.version != packet.V5 || c.isClosing()) {
				c.dur.broken = true
			}
			c.finishDurable(&jobs[i], jerr)
			jobs[i] = durableJob{}
		}
		c.flushDurable()
	}
}

// storeRetryFor and storeRetryPause: how long, and how often, the durable
// pipeline writes a batch again that no quorum acknowledged.
const (
	storeRetryFor   = 10 * time.Second
	storeRetryPause = 100 * time.Millisecond
)

// commitDurable commits the pipeline's batch. With outbound (PUBRECs'
// records and removals only) it rides the next sync the publishers'
// writes ask for (RidingStore): a second fsync per round would hold those
// writes up. A write no quorum acknowledged (ErrStoreNoQuorum: the
// cluster's journal while it elects a leader) is written again every
// storeRetryPause for up to storeRetryFor while the connection lasts,
// so that its client waits for its PUBACK, PUBREC or PUBREL instead of
// being refused. A second copy is harmless: each record the pipeline
// writes (an inbound QoS 2 id, a delivery, its AwaitPubcomp state, its
// removal) is set again to the same value, and no other write changes it
// before this one is answered (the packet that would, a PUBREL, PUBCOMP
// or PUBACK, waits for that answer).
func (c *conn) commitDurable(batch *Batch, outbound bool) error {
	deadline := time.Now().Add(storeRetryFor)
	for {
		var err error
		if outbound {
			err = c.b.commitRiding(batch)
		} else {
			err = c.b.commit(batch, true)
		}
		if err == nil || !errors.Is(err, ErrStoreNoQuorum) || c.isClosing() || !time.Now().Add(storeRetryPause).Before(deadline) {
			return err
		}
		c.b.stats.storeRetried.Add(1)
		time.Sleep(storeRetryPause)
	}
}

// remotelyTakenOver reports whether jobs hold a publish to log after its
// packet id's commit (logAfter) and another node took the connection's
// session over (Broker.KickRemote). A commit that returned before the
// kick began landed before the new owner's marker, which comes after the
// kick's answer: the new owner reads it.
func (c *conn) remotelyTakenOver(jobs []durableJob) bool {
	if !slices.ContainsFunc(jobs, func(j durableJob) bool { return j.logAfter }) {
		return false
	}
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	return c.remoteKicked
}

// stageDurable holds p, answering a job, for flushDurable.
func (c *conn) stageDurable(p packet.Packet) { c.dur.out = append(c.dur.out, p) }

// flushDurable queues the packets staged so far, in order, under one lock
// and with one wake of the writer, not one per acknowledgement.
func (c *conn) flushDurable() {
	out := c.dur.out
	if len(out) == 0 {
		return
	}
	c.mu.Lock()
	ok := !c.mu.closing
	if ok {
		c.mu.ctrl = append(c.mu.ctrl, out...)
	}
	c.mu.Unlock()
	clear(out)
	c.dur.out = out[:0]
	if ok {
		c.kick()
	}
}

// finishDurable completes one job after its commit: a publish ends as
// an inline one does (endPublish: queued, retained, acknowledged, or the
// store failure answered); a PUBREL is sent.
func (c *conn) finishDurable(j *durableJob, err error) {
	switch j.kind {
	case jobAck:
		c.ackPublishWith(j.p, j.code, (*conn).stageDurable)
		return
	case jobPubrel:
		if err != nil && j.seq != 0 {
			// Without its record the PUBREL is not sent: the connection
			// ends (PUBREL has no failure code), as the store refuses.
			// The session was not moved either (handlePubrec): resumed,
			// it sends the PUBLISH again (DUP), as the store would after
			// a restart, never a PUBREL the store does not know of.
			c.flushDurable()
			c.closeWith(packet.UnspecifiedError, reasonNetwork)
			return
		}
		if j.seq != 0 {
			c.sess.Pubrec(j.pid) // now that the store says so
		}
		c.stageDurable(ackPacket(packet.PUBREL, j.pid, j.code))
		return
	case jobPubcomp:
		if err != nil {
			// The id keeps cooling; the next connection of the session
			// writes the removal again before it is used (persistSession).
			c.flushDurable()
			c.closeWith(packet.UnspecifiedError, reasonNetwork)
			return
		}
		if c.sess.Cooled(j.pid, j.seq) {
			c.kick() // the writer may wait for this id
		}
		return
	}
	if j.write != 0 && err == nil {
		c.sess.SetInboundWrite(j.p.PacketID, 0) // the log holds it
		if j.resend {
			if j.lw.dup {
				// The first write's copy: routed from the log already.
				j.rt.release()
				c.ackPublishWith(j.p, packet.Success, (*conn).stageDurable)
				return
			}
			// The first write never reached the log: routed now, as it
			// would have been.
			j.rt.release()
			j.rt, _ = c.b.route(j.msg, nil)
			if j.p.Retain && c.b.store != nil {
				c.b.lazy(retainOp(j.msg))
			}
		}
	}
	defer j.rt.release()
	if ce, ok := c.endPublish(j.p, j.msg, j.rt, err, (*conn).stageDurable).(*closeError); ok {
		c.flushDurable()
		c.closeWith(ce.code, ce.reason)
	}
}

// waitDurable waits until the pipeline is empty and its goroutine gone.
func (c *conn) waitDurable() {
	if c.dur == nil {
		return
	}
	c.dur.mu.Lock()
	for c.dur.running {
		c.dur.cond.Wait()
	}
	c.dur.mu.Unlock()
}

// isClosing reports whether c is closing (no more session traffic).
func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closing
}
