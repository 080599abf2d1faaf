package cluster

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	// purgeQueue bounds the tombstones waiting for their purge on one
	// node. Past it a tombstone is not purged by this run of the node
	// (counted in Counters.PurgeDropped); the node schedules it again
	// when it next follows the stream from its start.
	purgeQueue = 65536
	// purgeQueueBytes bounds the subjects of the tombstones waiting for
	// their purge (a subject can be 192 KiB long), alike.
	purgeQueueBytes = 16 << 20
	// purgeTimeout bounds one purge request.
	purgeTimeout = 5 * time.Second
)

// purge is one tombstone to remove from the retained stream: the
// messages of subject up to and including sequence seq, once due.
type purge struct {
	subject string
	seq     uint64
	due     time.Time
}

// schedulePurge queues the purge of the tombstone at stream sequence seq
// on subject, written at stored, TombstoneTTL after it. It never blocks.
func (n *Node) schedulePurge(subject string, seq uint64, stored time.Time) {
	size := int64(len(subject))
	if n.purgeBytes.Add(size) > purgeQueueBytes {
		n.purgeBytes.Add(-size)
		n.count.purgeDropped.Add(1)
		return
	}
	select {
	case n.purges <- purge{subject: subject, seq: seq, due: stored.Add(n.cfg.tombstoneTTL())}:
		n.count.purgesScheduled.Add(1)
	default:
		n.purgeBytes.Add(-size)
		n.count.purgeDropped.Add(1)
	}
}

// dequeued releases the bytes of p, taken from the queue.
func (n *Node) dequeued(p purge) { n.purgeBytes.Add(-int64(len(p.subject))) }

// purgeLoop purges the queued tombstones, each when due. The queue is in
// stream order, so the due times follow each other.
func (n *Node) purgeLoop() {
	defer n.wg.Done()
	for {
		select {
		case p := <-n.purges:
			n.dequeued(p)
			if !sleepCtx(n.ctx, time.Until(p.due)) {
				return
			}
			n.purgeTombstone(p)
		case <-n.ctx.Done():
			return
		}
	}
}

// purgeTombstone removes p's tombstone. The purge takes only the
// messages of its subject up to the tombstone's sequence: when the topic
// was set again after the clear, the new message has a higher sequence
// and stays (with one message per subject, the tombstone is already gone
// then and nothing is removed).
func (n *Node) purgeTombstone(p purge) {
	ctx, cancel := context.WithTimeout(n.ctx, purgeTimeout)
	defer cancel()
	s, err := n.js.Stream(ctx, retainedStream)
	if err == nil {
		err = s.Purge(ctx, jetstream.WithPurgeSubject(p.subject), jetstream.WithPurgeSequence(p.seq+1))
	}
	if err != nil {
		n.count.purgeFailed.Add(1)
		n.logDrop(&n.count.lastPurgeFailed, "cluster: cleared retained topic's tombstone not purged", "subject", shorten(p.subject), "err", err)
		return
	}
	n.count.purged.Add(1)
}
