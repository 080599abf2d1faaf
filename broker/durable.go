package broker

import (
	"sync"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// durablePipe is a connection's durable pipeline: publishes waiting for
// their store write, acknowledged in order by one goroutine while any wait.
// The reader makes it at its first durable publish (most connections never
// have one).
type durablePipe struct {
	mu      sync.Mutex
	cond    sync.Cond
	jobs    []durableJob
	running bool
}

// durableMax bounds the publishes waiting in a connection's durable
// pipeline; beyond it the reader waits (a publisher that does not wait for
// its acks is slowed to the disk's pace).
const durableMax = 1024

// durableJob is one QoS 1/2 publish waiting for its store write, or,
// with ackOnly, an acknowledgement that must not overtake those waiting.
type durableJob struct {
	p       *packet.Publish
	msg     *session.Message
	rt      *routing // its staged deliveries
	extra   Batch    // its inbound QoS 2 id, retained message
	n       int      // sessions it was routed to
	ackOnly bool
	code    packet.ReasonCode // the ack's code, with ackOnly
}

// ackInOrder acknowledges a publish that needs no store write (refused,
// dropped), behind the publishes still waiting for theirs so that acks
// keep the order of the publishes [MQTT-4.6.0-2].
func (c *conn) ackInOrder(p *packet.Publish, code packet.ReasonCode) {
	if p.QoS > 0 && c.durablePending() {
		c.submitDurable(durableJob{p: p, ackOnly: true, code: code})
		return
	}
	c.ackPublish(p, code)
}

// durablePending reports whether publishes wait in the pipeline; later
// ones must then wait too, for acks to keep their order.
func (c *conn) durablePending() bool {
	if c.dur == nil {
		return false
	}
	c.dur.mu.Lock()
	defer c.dur.mu.Unlock()
	return c.dur.running
}

// submitDurable hands a publish to the pipeline, starting its goroutine
// when it is not running.
func (c *conn) submitDurable(j durableJob) {
	pub := *j.p // the reader reuses the packet it decoded into
	j.p = &pub
	if c.dur == nil {
		c.dur = &durablePipe{}
		c.dur.cond.L = &c.dur.mu
	}
	c.dur.mu.Lock()
	for len(c.dur.jobs) >= durableMax {
		c.dur.cond.Wait()
	}
	c.dur.jobs = append(c.dur.jobs, j)
	start := !c.dur.running
	c.dur.running = true
	c.dur.mu.Unlock()
	if start {
		go c.durableLoop()
	}
}

// durableLoop writes every waiting publish in one durable commit, then
// queues their deliveries and sends their acks in order, until none waits.
func (c *conn) durableLoop() {
	var batch Batch
	for {
		c.dur.mu.Lock()
		jobs := c.dur.jobs
		c.dur.jobs = nil
		if len(jobs) == 0 {
			c.dur.running = false
			c.dur.cond.Broadcast()
			c.dur.mu.Unlock()
			return
		}
		c.dur.cond.Broadcast()
		c.dur.mu.Unlock()

		batch.Reset()
		for i := range jobs {
			j := &jobs[i]
			if j.ackOnly {
				continue
			}
			batch.Ops = append(batch.Ops, j.extra.Ops...)
			j.rt.appendStaged(&batch)
		}
		err := c.b.commit(&batch, true)
		for i := range jobs {
			c.finishDurable(&jobs[i], err)
			jobs[i] = durableJob{}
		}
	}
}

// finishDurable completes one publish after its commit: on success its
// staged deliveries are queued, its retained message set and the ack sent.
func (c *conn) finishDurable(j *durableJob, err error) {
	if j.ackOnly {
		c.ackPublish(j.p, j.code)
		return
	}
	defer j.rt.release()
	if err != nil {
		if c.version == packet.V5 {
			c.ackPublish(j.p, packet.UnspecifiedError)
		} else {
			// 3.x has no way to say it: the connection ends, nothing
			// unstored is acknowledged.
			c.closeWith(packet.UnspecifiedError, reasonNetwork)
		}
		return
	}
	c.b.queueStaged(j.rt)
	if j.p.Retain {
		c.b.retainMessage(j.msg)
	}
	c.ackPublish(j.p, publishCode(c.version, j.n))
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
