package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// JetStream's error codes for a stream whose MaxBytes the servers'
// storage cannot reserve: "insufficient storage resources available"
// (standalone) and "insufficient resources" (no peer to place it on).
const (
	storageExceededCode      = 10047
	insufficientResourceCode = 10023
)

// isStorageExceeded reports JetStream's refusal to reserve a stream's
// MaxBytes.
func isStorageExceeded(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == storageExceededCode || apiErr.ErrorCode == insufficientResourceCode)
}

// logStreamConfig is the message log's stream at r replicas: limits
// retention (MaxAge, MaxBytes, the oldest discarded first), replicated
// file storage, direct gets for ReadLog.
func (n *Node) logStreamConfig(r int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        logStream,
		Subjects:    []string{logRoot + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      n.cfg.messageRetention(),
		MaxBytes:    n.cfg.messageBytes(),
		MaxMsgSize:  maxPayload,
		Discard:     jetstream.DiscardOld,
		Replicas:    r,
		Storage:     jetstream.FileStorage,
		AllowDirect: true,
	}
}

// followLog runs the node's one consumer on the message log at a time,
// once the broker is bound (and is a LogHost): it starts after the
// log's last sequence at that time and hands every later message to
// the broker, in sequence order, from this goroutine only.
func (n *Node) followLog() {
	defer n.wg.Done()
	select {
	case <-n.bound:
	case <-n.ctx.Done():
		return
	}
	h := n.logHost()
	if h == nil {
		n.log.Warn("cluster: the broker does not take messages from the message log (no LogHost): not following it")
		n.markFollowing() // nothing to wait for
		return
	}
	f := logFollower{n: n, h: h}
	// At most a second apart: the node's persistent sessions wait meanwhile.
	n.rerun("cannot follow the message log", time.Second, f.run)
}

// logFollower is followLog's state: the next sequence the broker expects.
type logFollower struct {
	n       *Node
	h       LogHost
	started bool   // LogFrom was called
	next    uint64 // the sequence the broker expects next
	runs    int    // consumers made so far (each run's names are its own)
}

// The follower's consumer. JetStream places an R1 consumer on any of the
// stream's peers, often another node. When that node dies the consumer
// goes with it and sends nothing more, not even an error: the follower
// learns it only from the missing idle heartbeats. nats.go's ordered
// consumer (a 5 s heartbeat, a reset after two missed, up to 10 s for
// each request for a new consumer, then a backoff growing to 10 s) left
// a node's persistent sessions without new messages for 10 s after
// another node's death, and longer when the meta leader died too. The
// heartbeat is checked only while the follower waits for a message, so
// a broker slow to take one does not end the consumer. The follower
// manages its consumer itself: it
// notices the silence after two followHeartbeat, asks for a new
// consumer for at most followCreate, and tries again within a second
// (followLog) until the cluster has a meta leader to make it.
const (
	followHeartbeat = time.Second
	followExpiry    = 10 * time.Second // a pull request's life: at least twice the heartbeat
	// followCreate bounds a request for a consumer: nats.go's default
	// API timeout (a loaded machine's meta leader may take seconds).
	followCreate = 5 * time.Second
	// followInactive: JetStream deletes a consumer nobody pulled from
	// for this long (one a follower left on a node it lost sight of).
	followInactive = 2 * time.Minute
)

// errFollowGap ends a consumer that skipped a delivery (its sequence of
// deliveries has a hole): the follower goes on from a new consumer.
var errFollowGap = errors.New("cluster: the message log's consumer skipped a delivery")

// followerName is the name of a follower's consumer: the stream's
// consumer list then says whose follower each consumer is, and a new
// consumer never takes an earlier one's name (which may outlive it, with
// other settings, until followInactive).
func (n *Node) followerName(what string, run int) string {
	return fmt.Sprintf("petrel_%s_%s_%x_%d", what, n.cfg.Node, n.incarnation, run)
}

// from tells the broker that its next message follows seq.
func (f *logFollower) from(seq uint64) {
	if f.started {
		f.n.count.followerResets.Add(1)
	}
	f.started = true
	f.next = seq + 1
	f.h.LogFrom(seq)
}

// run follows the log from f.next (or, the first time, after its last
// sequence) until the node stops or the consumer fails.
func (f *logFollower) run() error {
	n := f.n
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	s, err := n.logJS.Stream(ctx, logStream)
	cancel()
	if err != nil {
		return err
	}
	last := s.CachedInfo().State.LastSeq
	switch {
	case !f.started:
		f.from(last)
	case last+1 < f.next:
		// The log is behind what was handed over: it was recreated.
		f.from(last)
	}
	f.runs++
	name := n.followerName("log", f.runs)
	ctx, cancel = context.WithTimeout(n.ctx, followCreate)
	cons, err := n.logJS.CreateConsumer(ctx, logStream, jetstream.ConsumerConfig{
		Name:              name,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       f.next,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: followInactive,
		Replicas:          1,
		MemoryStorage:     true,
	})
	cancel()
	if err != nil {
		return err
	}
	defer f.drop(name)
	// Bounded in bytes, not in messages (each up to 64 MiB).
	it, err := cons.Messages(jetstream.PullMaxBytes(followBytes), jetstream.PullHeartbeat(followHeartbeat),
		jetstream.PullExpiry(followExpiry), jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return err
	}
	n.markFollowing()
	stop := context.AfterFunc(n.ctx, it.Stop)
	defer stop()
	defer it.Stop()
	var delivered uint64 // the consumer's delivery sequence so far
	for {
		m, err := it.Next()
		if err != nil {
			return err
		}
		if md, err := m.Metadata(); err == nil {
			if md.Sequence.Consumer != delivered+1 {
				return errFollowGap
			}
			delivered = md.Sequence.Consumer
		}
		f.deliver(m)
	}
}

// drop deletes a consumer the follower left, unless the node stops (the
// consumer then goes after followInactive, or with its node).
func (f *logFollower) drop(name string) {
	n := f.n
	go func() {
		ctx, cancel := context.WithTimeout(n.ctx, followCreate)
		defer cancel()
		_ = n.logJS.DeleteConsumer(ctx, logStream, name)
	}()
}

// deliver hands one message of the log to the broker: a copy from
// before a restart of the consumer is skipped; a message after a gap
// (messages the log discarded before they were read) first restarts the
// broker's count; one that does not decode is handed over as its
// position only.
func (f *logFollower) deliver(m jetstream.Msg) {
	n := f.n
	md, err := m.Metadata()
	if err != nil {
		n.count.malformed.Add(1)
		n.logDrop(&n.count.lastMalformed, "cluster: message log delivery without metadata ignored", "err", err)
		return
	}
	seq := md.Sequence.Stream
	if seq < f.next {
		return
	}
	if seq > f.next {
		f.from(seq - 1)
	}
	f.next = seq + 1
	var msg *session.Message
	here := false
	e, err := decodeLogEnvelope(m.Subject(), m.Data(), md.Timestamp)
	if err == nil {
		msg = e.msg
		here = e.node == n.cfg.Node && e.incarnation == n.incarnation
	}
	if err != nil {
		n.count.malformed.Add(1)
		n.logDrop(&n.count.lastMalformed, "cluster: malformed message in the message log", "seq", seq, "subject", shorten(m.Subject()), "err", err)
		msg = nil
	}
	n.count.followed.Add(1)
	f.h.DeliverLogged(msg, seq, here)
}
