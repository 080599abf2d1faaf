package cluster

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// The cluster's JetStream assets.
const (
	// retainedStream holds the retained message of every topic (subjects
	// r.<topic tokens>, one message per subject); an empty payload is a
	// tombstone that clears the topic.
	retainedStream = "PETREL_RETAINED"
	// ownersBucket holds, per session key, the node the session is
	// connected on and the epoch of its last claim.
	ownersBucket = "PETREL_OWNERS"
)

// ensureAssets creates (or updates) the JetStream assets, retrying until
// a JetStream meta leader answers, then follows the retained stream.
func (n *Node) ensureAssets() {
	defer n.wg.Done()
	r := n.cfg.replicas()
	backoff := 250 * time.Millisecond
	var lastLog time.Time
	for {
		// Short attempts: until a meta leader exists a request waits for
		// its whole timeout.
		ctx, cancel := context.WithTimeout(n.ctx, 3*time.Second)
		kv, err := n.createAssets(ctx, r)
		cancel()
		if err == nil {
			n.kv = kv
			close(n.assets)
			n.log.Info("cluster: JetStream assets ready", "replicas", r)
			break
		}
		if n.ctx.Err() != nil {
			return
		}
		if time.Since(lastLog) > 30*time.Second {
			lastLog = time.Now()
			n.log.Warn("cluster: JetStream assets not created yet; retrying", "replicas", r, "err", err)
			if isStorageExceeded(err) {
				n.log.Error("cluster: not enough JetStream storage for the message log: each node reserves cluster.message_bytes in cluster.data_dir's file system; lower it or free space", "message_bytes", n.cfg.messageBytes())
			}
		}
		if !sleepCtx(n.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	n.wg.Add(1)
	go n.followLog()
	n.followRetained()
}

// createAssets creates or updates the retained stream, the message log,
// the session journal's stream and the owners bucket at r replicas.
func (n *Node) createAssets(ctx context.Context, r int) (jetstream.KeyValue, error) {
	_, err := n.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              retainedStream,
		Subjects:          []string{rootRetained + ".>"},
		MaxMsgsPerSubject: 1,
		Replicas:          r,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, err
	}
	if _, err := n.js.CreateOrUpdateStream(ctx, n.logStreamConfig(r)); err != nil {
		return nil, err
	}
	if _, err := n.js.CreateOrUpdateStream(ctx, sessionsStreamConfig(r)); err != nil {
		return nil, err
	}
	return n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   ownersBucket,
		History:  1,
		Replicas: r,
		Storage:  jetstream.FileStorage,
	})
}

// rerun calls run until the node stops. Each time run returns, it logs
// why (what, err) and pauses: 250 ms, doubling up to most.
func (n *Node) rerun(what string, most time.Duration, run func() error) {
	backoff := 250 * time.Millisecond
	for {
		err := run()
		if n.ctx.Err() != nil {
			return
		}
		n.log.Warn("cluster: "+what+"; retrying", "err", err)
		if !sleepCtx(n.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, most)
	}
}

// sleepCtx waits for d or ctx; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// followRetained runs the node's one ordered consumer on the retained
// stream, once the broker is bound: the last message of every topic,
// then every change, each applied to the broker's retained index unless
// this node (this incarnation) set it.
func (n *Node) followRetained() {
	select {
	case <-n.bound:
	case <-n.ctx.Done():
		return
	}
	run := 0
	n.rerun("cannot follow the retained stream", 5*time.Second, func() error {
		run++
		cons, err := n.js.OrderedConsumer(n.ctx, retainedStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{rootRetained + ".>"},
			DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
			NamePrefix:     n.followerName("retained", run),
		})
		if err != nil {
			return err
		}
		// Bounded in bytes, not in messages (500 by default, each up to
		// 64 MiB); the heartbeat as the log's follower's.
		cc, err := cons.Consume(n.applyRetained, jetstream.PullMaxBytes(followBytes),
			jetstream.PullHeartbeat(followHeartbeat), jetstream.PullExpiry(followExpiry))
		if err != nil {
			return err
		}
		<-n.ctx.Done()
		cc.Stop()
		return nil
	})
}

// followBytes bounds the retained messages the follower's consumer
// buffers: twice the largest message, so that a refill (at half) always
// has room for one.
const followBytes = 2 * (maxPayload + 1<<20)

// applyRetained applies one retained message from the stream. A tombstone
// this node wrote (in this run or an earlier one) is purged TombstoneTTL
// after it was stored.
func (n *Node) applyRetained(m jetstream.Msg) {
	stored := time.Now()
	var seq uint64
	if md, err := m.Metadata(); err == nil {
		stored = md.Timestamp // the expiry counts from when it was stored
		seq = md.Sequence.Stream
	}
	topic, err := retainedTopic(m.Subject())
	var e envelope
	if err == nil {
		e, err = decodeEnvelope(topic, m.Data(), stored)
	}
	if err != nil {
		n.count.malformed.Add(1)
		n.logDrop(&n.count.lastMalformed, "cluster: malformed retained message ignored", "subject", shorten(m.Subject()), "err", err)
		return
	}
	if len(e.msg.Payload) == 0 && e.node == n.cfg.Node && seq != 0 {
		n.schedulePurge(m.Subject(), seq, stored)
	}
	if e.node == n.cfg.Node && e.incarnation == n.incarnation {
		return // set here, already in the local index
	}
	if e.msg.Expired(time.Now()) {
		return
	}
	e.msg.Retain = true
	n.count.retainApplied.Add(1)
	n.host().ApplyRetained(e.msg)
}

// retainInFlightBytes bounds the bytes of retained changes published and
// not yet acknowledged by JetStream (nats.go keeps each until its
// acknowledgement, at most retainAckWait): past it a change is not
// replicated (counted in Counters.RetainFailed), unless none is in
// flight.
const retainInFlightBytes = 64 << 20

// retainAckWait bounds the wait for JetStream's acknowledgement of a
// retained change (without a quorum none comes).
const retainAckWait = 10 * time.Second

// retainSettled releases a retained change's bytes when JetStream
// acknowledged it or it failed.
func (n *Node) retainSettled(data []byte) {
	n.retainInFlight.Add(-int64(len(data)))
}

// Retain implements broker.Fabric: it publishes msg to the retained
// stream asynchronously (an empty payload clears the topic). A failure
// is logged and counted (Counters.RetainFailed), never waited for; so is
// a change while retainInFlightBytes wait for their acknowledgement.
func (n *Node) Retain(msg *session.Message) {
	subject, err := retainedSubject(msg.Topic)
	if err != nil {
		n.count.tooLong.Add(1)
		n.logDrop(&n.count.lastTooLong, "cluster: topic too long to replicate, retained message not replicated", "bytes", len(msg.Topic))
		return
	}
	select {
	case <-n.assets:
	default:
		n.count.retainFailed.Add(1)
		n.logDrop(&n.count.lastRetainFailed, "cluster: retained message not replicated: JetStream not ready", "topic", shorten(msg.Topic))
		return
	}
	body := appendEnvelope(nil, msg, n.cfg.Node, n.incarnation, time.Now())
	if len(body) > maxPayload {
		n.count.tooLarge.Add(1)
		n.logDrop(&n.count.lastTooLarge, "cluster: retained message too large to replicate", "bytes", len(body))
		return
	}
	size := int64(len(body))
	if total := n.retainInFlight.Add(size); total > retainInFlightBytes && total != size {
		n.retainInFlight.Add(-size)
		n.count.retainFailed.Add(1)
		n.logDrop(&n.count.lastRetainFailed, "cluster: retained message not replicated: too many bytes waiting for JetStream", "topic", shorten(msg.Topic), "bound_bytes", retainInFlightBytes)
		return
	}
	if _, err := n.js.PublishAsync(subject, body, jetstream.WithStallWait(time.Millisecond)); err != nil {
		n.retainInFlight.Add(-size)
		n.count.retainFailed.Add(1)
		n.logDrop(&n.count.lastRetainFailed, "cluster: retained message not replicated", "topic", shorten(msg.Topic), "err", err)
		return
	}
	n.count.retained.Add(1)
}
